"""The UI's HTTP server: the standard library's ``http.server`` on a fixed pool of threads, read-only.

Routes (GET and HEAD; POST only for annotations, and only when started with ``annotate=True``
(``galtea-otel ui --annotate``); anything else is 405):

- ``/``: the sessions page; the filters are the URL query (``store.filters.parse_query``), ``after`` the page
  cursor, ``limit`` the page size (1-1000, default 50).
- ``/sessions/<custom_id>/<version>``: one session (404 when it is not in the store); ``.json`` appended: its
  ``SessionDetail`` as JSON.
- ``/api/sessions``: the sessions page as JSON (the same query), ``{"sessions": [...], "next": cursor}``.
- ``/static/...``: the CSS, JS and icon in ``galtea_otel/ui/static`` (package data).
- ``/healthz``: ``ok``.
- ``POST /sessions/<custom_id>/<version>/annotate`` (``--annotate`` only): a form (``name``, ``score`` or
  ``label``, ``note``, ``turn``: a turn's index or empty for the session, ``by``, ``csrf``) stored as an
  evaluation with source ``human`` (``evaluate.human``, as ``galtea-otel annotate``), then 303 back to the page.
  The form carries this server's CSRF token (random per process) and a POST whose ``Origin`` names another
  origin is refused (403); bad input gets a 400 page that says what to change.

Live updates are a short poll by ``app.js`` (the page fetches itself every couple of seconds while visible and
swaps in what changed), so no connection stays open and a page costs one indexed query per poll.

Security: loopback by default; a token (``--token-file``) guards every request when given, as
``Authorization: Bearer <token>`` or a cookie that ``?token=<token>`` sets once (and is then removed from the
URL); without a token, only requests whose ``Host`` is the loopback address are served (a DNS-rebinding page
cannot read the UI). Every page is served with a Content-Security-Policy that allows nothing but this origin.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from galtea_otel.serve.peek import waiting_spans
from galtea_otel.store.base import Store
from galtea_otel.store.filters import MAX_LIMIT, Cursor, FilterError, SessionFilter, parse_query
from galtea_otel.sync.outbox import open_outbox
from galtea_otel.ui import pages

log = logging.getLogger("galtea_otel.ui")

COOKIE = "galtea_otel_ui"
DEFAULT_PORT = 7007
PAGE_PARAMS = ("after", "limit", "token", "meta")
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml", ".png": "image/png"}
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
MAX_FORM_BYTES = 64 * 1024


class UIError(ValueError):
    """Asked to start in a way it refuses (a public address without a token)."""


class HttpError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip("[]") in ("localhost", ""):
        return host != ""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token (the rule of ``galtea-otel serve``)."""
    if not is_loopback(host) and not token:
        raise UIError(f"refusing to serve the UI on the non-loopback address {host} without a token: pass "
                      "--token-file FILE (every request then needs the token)")


class UIApp:
    """Request handling, independent of the socket server (one instance serves every thread)."""

    def __init__(self, store: Store, *, token: str | None = None, host: str = "127.0.0.1",
                 project: str | None = None, annotate: bool = False) -> None:
        import secrets

        self.store = store
        self.project = project  # issue 12: ``galtea-otel ui --project P``: the listing's default filter
        self.token = token
        self.host = host
        self.annotate = annotate
        self.csrf = secrets.token_urlsafe(24)  # in every annotation form; a POST without it is refused
        self.store_label = _store_label(store.url)

    # --- entry --------------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Any, body: bytes = b"") -> Response:
        try:
            parts = urlsplit(target)
            if method == "POST" and self.annotate and parts.path.endswith("/annotate"):
                self._check_host(headers)
                self._check_token(parts.path, {}, headers)
                return self._annotate(parts.path, headers, body)
            if method not in ("GET", "HEAD"):
                why = ("only GET requests and annotations are served" if self.annotate else
                       "only GET requests are served (start it with --annotate to annotate sessions)")
                raise HttpError(405, "Method not allowed", f"This UI is read-only: {why}.")
            query = parse_qs(parts.query, keep_blank_values=True)
            self._check_host(headers)
            redirect = self._check_token(parts.path, query, headers)
            if redirect is not None:
                return redirect
            return self._route(parts.path, query, parts.query)
        except HttpError as exc:
            page = pages.error_page(exc.status, exc.title, exc.message)
            # No token (401) or a foreign Host (403): the assets would be refused too, so the page goes without.
            return _html(exc.status, exc.title, pages.layout(exc.title, page, bare=exc.status in (401, 403)))
        except Exception:
            log.exception("the UI failed to answer %s %s", method, target[:200])
            message = "The UI could not answer this request; the server's log has the details."
            return _html(500, "Server error", pages.layout("Server error", pages.error_page(500, "Server error",
                                                                                          message)))

    def _check_host(self, headers: Any) -> None:
        if self.token:
            return
        host = (headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:host.find("]")]
        if name.lower() not in _LOOPBACK_NAMES | {self.host.lower()}:
            raise HttpError(403, "Forbidden", f"This UI answers only requests addressed to {self.host}"
                                              f" (this one named {host[:100]!r}).")

    def _check_token(self, path: str, query: dict[str, list[str]], headers: Any) -> Response | None:
        if not self.token:
            return None
        given = query.get("token", [None])[0]
        if given is not None and _same(given, self.token):
            rest = [(k, v) for k, values in query.items() if k != "token" for v in values]
            location = path + ("?" + urlencode(rest) if rest else "")
            cookie = f"{COOKIE}={quote(self.token, safe='')}; Path=/; HttpOnly; SameSite=Strict"
            return Response(303, b"", headers=(("Location", location), ("Set-Cookie", cookie)))
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("bearer ") and _same(auth[7:].strip(), self.token):
            return None
        for part in (headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and _same(unquote(value), self.token):
                return None
        raise HttpError(401, "Token needed", "This UI is guarded by a token: open it once with ?token=<the token"
                                             " in the --token-file> (a cookie keeps it), or send"
                                             " Authorization: Bearer <token>.")

    # --- routes -------------------------------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, list[str]], raw_query: str) -> Response:
        if path == "/":
            return self._sessions(query, raw_query)
        if path == "/api/sessions":
            return self._sessions_json(query)
        if path == "/healthz":
            return Response(200, b"ok\n", "text/plain; charset=utf-8")
        if path.startswith("/static/"):
            return _static(path[len("/static/"):])
        if path == "/favicon.ico":
            return _static("favicon.svg")
        if path.startswith("/sessions/"):
            rest = path[len("/sessions/"):]
            as_json = rest.endswith(".json")
            if as_json:
                rest = rest[:-len(".json")]
            custom, sep, version = rest.partition("/")
            if not sep or not custom or not version or "/" in version:
                raise HttpError(404, "Not found", "A session's address is /sessions/<custom id>/<version>.")
            return self._session(unquote(custom), unquote(version), as_json,
                                 query.get("project", [None])[0] or self.project)
        raise HttpError(404, "Not found", f"There is no page at {path[:200]}.")

    def _listing(self, query: dict[str, list[str]]) -> tuple[SessionFilter, Cursor | None, int]:
        try:
            params = {k: v for k, v in query.items() if k != "meta"}
            for value in query.get("meta", []):  # the form's "key=value key2=value2" field
                for item in value.split():
                    key, sep, text = item.partition("=")
                    if not sep or not key:
                        raise FilterError(f"metadata filter {item!r} is not KEY=VALUE")
                    params.setdefault(f"metadata.{key}", []).append(text)
            if self.project and "project" not in params:
                params["project"] = [self.project]
            flt = parse_query(params, ignore=PAGE_PARAMS)
            after_text = query.get("after", [""])[0]
            after = Cursor.decode(after_text) if after_text else None
            limit_text = query.get("limit", ["50"])[0] or "50"
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
                raise FilterError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit_text!r}")
        except FilterError as exc:
            raise HttpError(400, "Bad filter", str(exc)) from None
        return flt, after, int(limit_text)

    def _sessions(self, query: dict[str, list[str]], raw_query: str) -> Response:
        flt, after, limit = self._listing(query)
        canonical = flt.query() + ([("limit", str(limit))] if limit != 50 else []) + (
            [("after", after.encode())] if after else [])
        if sorted(canonical) != sorted((k, v) for k, values in query.items() for v in values if k != "token"):
            # Empty form fields, ``meta=k=v``: redirect to the URL a user would bookmark.
            return Response(303, b"", headers=(("Location", "/" + ("?" + urlencode(canonical) if canonical else "")),))
        page = self.store.list_sessions(filter=flt, after=after, limit=limit)
        body = pages.sessions_page(page, flt, after=query.get("after", [None])[0], limit=limit,
                                   store_label=self.store_label, waiting=waiting_spans(self.store))
        return _html(200, "Sessions", pages.layout("Sessions", body, live=True, page="sessions"))

    def _sessions_json(self, query: dict[str, list[str]]) -> Response:
        flt, after, limit = self._listing(query)
        page = self.store.list_sessions(filter=flt, after=after, limit=limit)
        data = {"sessions": [{**s.model_dump(mode="json"), "lifecycle": page.lifecycle.get((s.custom_id, s.version))}
                             for s in page],
                "next": page.next.encode() if page.next else None, "searched": page.searched}
        return Response(200, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def _annotate(self, path: str, headers: Any, body: bytes) -> Response:
        from galtea_otel.evaluate.human import AnnotationError, annotate
        from galtea_otel.pipeline import read_session

        origin = headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != (headers.get("Host") or "").lower():
            raise HttpError(403, "Forbidden", f"An annotation must come from this UI's own page, not {origin[:100]!r}.")
        kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HttpError(400, "Bad annotation", "An annotation is a form (application/x-www-form-urlencoded).")
        try:
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True,
                                                 strict_parsing=bool(body)).items()}
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "Bad annotation", "The form could not be read (not URL-encoded UTF-8).") from None
        if not _same(form.get("csrf", ""), self.csrf):
            raise HttpError(403, "Forbidden", "This form is stale or did not come from this UI (its CSRF token does"
                                              " not match): reload the session's page and annotate again.")
        rest = path[len("/sessions/"):-len("/annotate")] if path.startswith("/sessions/") else ""
        custom, sep, version = rest.partition("/")
        if not sep or not custom or not version or "/" in version:
            raise HttpError(404, "Not found", "Annotate at /sessions/<custom id>/<version>/annotate.")
        # Issue 12: the form names the session's project (its page's ``?project=``).
        found = self.store.find_session_key(unquote(custom), unquote(version), form.get("project") or "default")
        detail = read_session(self.store, found) if found is not None else None
        key = found or (unquote(custom), unquote(version), form.get("project") or "default")
        if detail is None:
            raise HttpError(404, "Unknown session", f"There is no session {key[0]!r} with version {key[1]!r}"
                                                    f" in {self.store_label}.")
        score_text = form.get("score", "").strip()
        turn_text = form.get("turn", "").strip()
        try:
            score = float(score_text) if score_text else None
        except ValueError:
            raise HttpError(400, "Bad annotation", f"The score must be a number, not {score_text[:50]!r}.") from None
        if turn_text and not turn_text.isdigit():
            raise HttpError(400, "Bad annotation", f"The turn must be a turn's number, not {turn_text[:50]!r}.")
        if turn_text and not 1 <= int(turn_text) <= len(detail.inference_results):
            raise HttpError(400, "Bad annotation", f"Not stored: this session has {len(detail.inference_results)}"
                                                   f" turn(s), there is no turn {int(turn_text)}.")
        try:
            evaluation = annotate(self.store, key, detail, name=form.get("name", ""), score=score,
                                  label=form.get("label") or None, note=form.get("note") or None,
                                  turn=int(turn_text) - 1 if turn_text else None,
                                  author=form.get("by", "").strip()[:100] or "human")
        except AnnotationError as exc:
            raise HttpError(400, "Bad annotation", f"Not stored: {exc}.") from None
        anchor = f"#turn-{int(turn_text) - 1}" if turn_text else "#evaluations"
        log.info("annotated %s %s: %s (%s)", key[0], key[1], evaluation.name, evaluation.id)
        return Response(303, b"", headers=(("Location", pages.session_href(*key) + anchor),))

    def _session(self, custom_id: str, version: str, as_json: bool, project: str | None = None) -> Response:
        from galtea_otel.pipeline import read_session

        # Issue 12: ``?project=P`` (links carry it when not the default); without it, the newest of any project.
        found_key = self.store.find_session_key(custom_id, version, project)
        detail = read_session(self.store, found_key) if found_key is not None else None
        if detail is None or found_key is None:
            raise HttpError(404, "Unknown session", f"There is no session {custom_id!r} with version {version!r}"
                                                    f" in {self.store_label}.")
        if as_json:
            return Response(200, detail.model_dump_json(indent=2).encode(), "application/json")
        found = self.store.list_sessions(
            filter=SessionFilter(custom_id=custom_id, version=version, project=found_key[2]), limit=1)
        lifecycle = found.lifecycle.get((custom_id, version))
        sync_state = open_outbox(self.store).state(found_key)
        if sync_state is not None and sync_state.platform_id is None and not sync_state.turns:
            sync_state = None
        test_case = self.store.get_test_case(detail.test_case_id) if detail.test_case_id else None
        body = pages.session_page(detail, lifecycle=lifecycle, sync_state=sync_state, test_case=test_case,
                                  csrf=self.csrf if self.annotate else None)
        return _html(200, custom_id, pages.layout(custom_id, body, live=True, page="session"))


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def _html(status: int, title: str, text: str) -> Response:
    return Response(status, text.encode())


def _static(name: str) -> Response:
    if not name or "/" in name or name.startswith(".") or "\\" in name:
        raise HttpError(404, "Not found", "No such file.")
    suffix = name[name.rfind("."):] if "." in name else ""
    kind = _STATIC_TYPES.get(suffix)
    resource = resources.files("galtea_otel.ui").joinpath("static", name)
    if kind is None or not resource.is_file():
        raise HttpError(404, "Not found", f"No static file {name[:100]!r}.")
    return Response(200, resource.read_bytes(), kind, (("Cache-Control", "no-cache"),))


def _store_label(url: str) -> str:
    """The store URL without any password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the store"
    if parts.password is None:
        return url
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}").geturl()


# --- the socket server ------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    timeout = 15  # a client that stalls mid-request frees its thread after this many seconds
    server_version = "galtea-otel-ui"
    sys_version = ""

    def _answer(self) -> None:
        body = b""
        if self.command == "POST":
            length_text = self.headers.get("Content-Length") or "0"
            length = int(length_text) if length_text.isdigit() else -1
            if not 0 <= length <= MAX_FORM_BYTES:
                self.close_connection = True
                if length > MAX_FORM_BYTES:
                    return self._send(_refusal(413, "Too large", f"An annotation form holds at most"
                                                                 f" {MAX_FORM_BYTES // 1024} KB."))
                return self._send(_refusal(411, "Length required", "A POST needs its Content-Length."))
            body = self.rfile.read(length)
        self._send(self.server.app.handle(self.command, self.path, self.headers, body))

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        if response.content_type.startswith(("text/html", "application/json")):
            self.send_header("Cache-Control", "no-store")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _refusal(status: int, title: str, message: str) -> Response:
    return _html(status, title, pages.layout(title, pages.error_page(status, title, message)))



class UIServer(ThreadingMixIn, HTTPServer):
    """An HTTP server whose requests run on a fixed pool of threads (so a SQLite store keeps one connection per
    thread, not one per request)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: UIApp, *, threads: int = 8) -> None:
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="galtea-otel-ui")
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self.process_request_thread, request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a connection mid-answer (a page left during a poll) is routine, not an error."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("UI client %s went away: %s", client_address, exc)
        else:
            log.error("UI request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}/"


def make_server(store: Store, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                token: str | None = None, project: str | None = None, annotate: bool = False) -> UIServer:
    """A UI server bound to ``host:port`` (port 0: a free one); call ``serve_forever``. Refuses a public
    ``host`` without a token. ``project``: the sessions listing's default project filter (issue 12).
    ``annotate``: the session page's annotation form is shown and served."""
    check_bind(host, token)
    return UIServer((host, port), UIApp(store, token=token, host=host, project=project, annotate=annotate))


def warm_up() -> None:
    """Import what pages need (the records, on pydantic; the pipeline's reader) ahead of the first request, off
    the thread that serves: ``galtea-otel ui`` starts without them, then loads them while the browser opens."""
    import importlib

    try:
        for module in ("galtea_otel.records", "galtea_otel.pipeline"):
            importlib.import_module(module)
    except Exception:  # pragma: no cover - the first request imports them again and reports what fails
        log.debug("the UI's warm-up import failed", exc_info=True)


def start_warm_up() -> threading.Thread:
    thread = threading.Thread(target=warm_up, name="galtea-otel-ui-warm-up", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def serving_in_thread(store: Store, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                      token: str | None = None, project: str | None = None) -> Iterator[UIServer]:
    """Serve the UI from a background thread for the ``with`` block (``galtea-otel serve --ui``, tests)."""
    server = make_server(store, host, port, token=token, project=project)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="galtea-otel-ui", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
