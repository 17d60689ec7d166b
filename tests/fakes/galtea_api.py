"""A local stand-in for the Galtea REST API, for the sync tests: only the endpoints the sync uses.

Every request body is validated against the official SDK's own pydantic models (``SessionBase``, ``SessionUpdate``,
``TraceBase``, ``TraceUpdate``, ``SpanBase`` from the installed ``galtea`` package) and must not carry a key those
models do not declare; every reply is checked against the SDK's read models (``Session``, ``Trace``, ``Span``,
``Version``), so what passes here is what the SDK itself sends and reads. It behaves as the platform is documented
to (``../shared/docs/GALTEA_PLATFORM.md``): a custom id is unique per version (409), a session starts PENDING,
``finish`` closes it COMPLETED (FAILED with an error), a turn for a closed session reopens it, a turn is updated by
``PATCH inferenceResults/{id}`` (the fields sent, as the SDK's ``traces.update`` sends them) and deleted with its
spans by ``DELETE inferenceResults/{id}`` (the SDK's ``traces.delete``; 404 when it is gone), span batches answer
``partialSuccess`` for refused spans. Evaluations (issue 11): metrics are found by name and created
(``GET``/``POST metrics``, ``MetricBase``; a name is unique: 409); an evaluation with a pre-computed score is created
by ``POST evaluations/fromSession`` / ``evaluations/fromInferenceResult`` (the bodies the SDK's
``evaluations.create`` sends; a self-hosted metric needs a score from 0 to 1), listed by session
(``GET evaluations?sessionIds[]=``, a turn's included) and deleted (``DELETE evaluations/{id}``); replies are read
back with the SDK's ``Metric`` and ``Evaluation`` models.

It can be told to fail (:meth:`FakeGaltea.fail`): an HTTP status (429 with ``Retry-After``, 500, 400...) before
doing anything, a hang *after* committing (the client times out though the write happened), a dropped
connection before or after committing.

Run it alone: ``python -m tests.fakes.galtea_api --port 8899 --api-key KEY [--fail-every N]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from galtea.domain.models.evaluation import Evaluation
from galtea.domain.models.metric import Metric, MetricBase
from galtea.domain.models.session import Session, SessionBase, SessionUpdate
from galtea.domain.models.span import Span, SpanBase
from galtea.domain.models.trace import Trace, TraceBase, TraceUpdate
from galtea.domain.models.version import Version
from pydantic import BaseModel, ValidationError


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def validate(model: type[BaseModel], body: Any, extra: frozenset[str] | set[str] = frozenset()) -> BaseModel:
    """The body as ``model``; 400 on a key the model does not declare or on a value it refuses."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object for {model.__name__}")
    unknown = set(body) - _aliases(model) - set(extra)
    if unknown:
        raise ApiError(400, f"{model.__name__} has no field(s) {sorted(unknown)}")
    try:
        return model.model_validate({k: v for k, v in body.items() if k not in extra})
    except ValidationError as exc:
        raise ApiError(400, f"invalid {model.__name__}: {exc.errors(include_url=False)}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


@dataclass
class Fault:
    method: str
    path: str  # a prefix of the path, without the leading slash
    mode: str  # "status", "hang" (after committing), "drop" (after committing), "drop_before"
    status: int = 500
    retry_after: str | None = None
    message: str = "injected failure"
    times: int = 1
    hang_s: float = 3.0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and path.startswith(self.path)


@dataclass
class FakeGaltea:
    api_key: str = "gsk_test_key"
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    turns: dict[str, dict[str, Any]] = field(default_factory=dict)
    spans: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # time.monotonic() of each entry of ``requests``
    bodies: list[tuple[str, str, Any]] = field(default_factory=list)
    conflicts: int = 0  # POST sessions refused because the custom id exists in that version
    duplicate_spans: int = 0  # spans posted again with an id already stored
    deleted_turns: list[dict[str, Any]] = field(default_factory=list)  # turns removed by DELETE inferenceResults
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_evaluations: list[dict[str, Any]] = field(default_factory=list)
    fail_every: int = 0  # with N > 0, every Nth write request fails with a 500 before doing anything
    delay_s: float = 0.0  # every request waits this long first (a slow platform)
    # Cleared: every request waits until it is set again (a platform that answers nothing for now).
    open: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    faults: list[Fault] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _writes: int = 0

    # --- test helpers -----------------------------------------------------------------------------------------

    def fail(self, method: str, path: str, mode: str = "status", **kwargs: Any) -> Fault:
        fault = Fault(method, path, mode, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def add_version(self, product_id: str, name: str) -> str:
        version_id = f"ver_{uuid.uuid4().hex[:12]}"
        self.versions[version_id] = {"id": version_id, "productId": product_id, "name": name, "createdAt": _now()}
        return version_id

    def session_by_custom_id(self, custom_id: str) -> list[dict[str, Any]]:
        return [s for s in self.sessions.values() if s["customId"] == custom_id]

    def turns_of(self, session_id: str) -> list[dict[str, Any]]:
        return sorted((t for t in self.turns.values() if t["sessionId"] == session_id), key=lambda t: t["index"])

    def spans_of(self, turn_id: str) -> list[dict[str, Any]]:
        return [s for s in self.spans.values() if s["inferenceResultId"] == turn_id]

    def evaluations_of(self, session_id: str) -> list[dict[str, Any]]:
        """The session's evaluations (its turns' included), as (metric name, turn id or None, score) dicts."""
        names = {m["id"]: m["name"] for m in self.metrics.values()}
        return [{**e, "metric": names[e["metricId"]]} for e in self.evaluations.values()
                if e["sessionId"] == session_id]

    # --- dispatch ---------------------------------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}{uuid.uuid4().hex[:6]}"

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.split("/")
        if method == "GET" and path == "sessions":
            return 200, self._list_sessions(query)
        if method == "POST" and path == "sessions":
            return 200, self._create_session(body)
        if method == "PATCH" and len(parts) == 2 and parts[0] == "sessions":
            return 200, self._update_session(parts[1], body)
        if method == "PATCH" and len(parts) == 3 and parts[0] == "sessions" and parts[2] == "finish":
            return 200, self._finish_session(parts[1], body)
        if method == "POST" and path == "inferenceResults":
            return 200, self._create_turn(body)
        if method == "PATCH" and len(parts) == 2 and parts[0] == "inferenceResults":
            return 200, self._update_turn(parts[1], body)
        if method == "DELETE" and len(parts) == 2 and parts[0] == "inferenceResults":
            return 200, self._delete_turn(parts[1])
        if method == "GET" and path == "inferenceResults":
            return 200, self._page([t for t in self.turns.values()
                                    if t["sessionId"] in query.get("sessionIds[]", [])], query, "index")
        if method == "POST" and path == "traces/batch":
            return 200, self._create_spans(query, body)
        if method == "GET" and path == "traces":
            return 200, self._page([s for s in self.spans.values()
                                    if s["inferenceResultId"] in query.get("inferenceResultIds[]", [])], query,
                                   "startTime")
        if method == "GET" and path == "metrics":
            names = query.get("names[]", [])
            found = [m for m in self.metrics.values() if m["name"] in names]
            for metric in found:
                Metric(**metric)
            return 200, found
        if method == "POST" and path == "metrics":
            return 200, self._create_metric(body)
        if method == "POST" and path in ("evaluations/fromSession", "evaluations/fromInferenceResult"):
            return 200, self._create_evaluations(path.split("/")[1], body)
        if method == "GET" and path == "evaluations":
            session_ids = query.get("sessionIds[]")
            if not session_ids:
                raise ApiError(400, "At least one ID filter parameter must be provided.")
            return 200, self._page([e for e in self.evaluations.values() if e["sessionId"] in session_ids], query,
                                   "createdAt")
        if method == "DELETE" and len(parts) == 2 and parts[0] == "evaluations":
            found = self.evaluations.pop(parts[1], None)
            if found is None:
                raise ApiError(404, f"Evaluation {parts[1]} not found")
            self.deleted_evaluations.append(found)
            return 200, found
        if method == "GET" and path == "versions":
            found = [v for v in self.versions.values()
                     if v["productId"] in query.get("productIds[]", []) and v["name"] in query.get("names[]", [])]
            for version in found:
                Version(**version)
            return 200, found
        if method == "POST" and path == "versions/get-or-create":
            return 200, self._version_get_or_create(body)
        raise ApiError(404, f"Cannot {method} /{path}")

    def _page(self, rows: list[dict[str, Any]], query: dict[str, list[str]], order: str) -> list[dict[str, Any]]:
        rows = sorted(rows, key=lambda r: (r.get(order) or 0, r["id"]))
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["1000"])[0])
        return rows[offset:offset + limit]

    def _session_reply(self, session: dict[str, Any]) -> dict[str, Any]:
        Session(**json.loads(json.dumps(session)))  # the SDK can read it
        return session

    def _list_sessions(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        custom_ids = query.get("customIds[]")
        version_ids = query.get("versionIds[]")
        if not custom_ids and not version_ids and not query.get("ids[]"):
            raise ApiError(400, "a scoping filter is required")
        return [self._session_reply(s) for s in self.sessions.values()
                if (not custom_ids or s["customId"] in custom_ids)
                and (not version_ids or s["versionId"] in version_ids)]

    def _create_session(self, body: Any) -> dict[str, Any]:
        model = validate(SessionBase, body, extra={"isProduction"})
        assert isinstance(model, SessionBase)
        if not model.version_id:
            raise ApiError(400, "versionId is required here (the stand-in does not resolve products)")
        if model.version_id not in self.versions:
            raise ApiError(404, f"Version {model.version_id} not found")
        is_production = body.get("isProduction")
        if is_production is None:
            is_production = model.test_case_id is None
        if is_production and model.test_case_id:
            raise ApiError(400, "a production session cannot have a test case")
        if model.test_case_id and model.context:
            raise ApiError(400, "the context of a test-case session comes from its test case")
        if model.custom_id and any(s["customId"] == model.custom_id and s["versionId"] == model.version_id
                                   for s in self.sessions.values()):
            self.conflicts += 1
            raise ApiError(409, f"a session with custom id {model.custom_id} already exists in this version")
        session = {
            "id": self._id("session"), "customId": model.custom_id, "versionId": model.version_id,
            "testCaseId": model.test_case_id,
            "context": {"value": model.context} if model.context is not None else None,
            "metadata": model.metadata, "status": "PENDING", "isProduction": bool(is_production),
            "createdAt": _now(), "stoppingReason": None, "error": None,
        }
        self.sessions[session["id"]] = session
        return self._session_reply(session)

    def _session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(404, f"Session {session_id} not found")
        return session

    def _update_session(self, session_id: str, body: Any) -> dict[str, Any]:
        model = validate(SessionUpdate, body)
        session = self._session(session_id)
        for name in model.model_fields_set:
            alias = SessionUpdate.model_fields[name].alias or name
            value = getattr(model, name)
            if name == "context":
                value = {"value": value} if value is not None else None
            if name == "status" and value is not None:
                value = str(getattr(value, "value", value)).upper()
            session[alias] = value
        return self._session_reply(session)

    def _finish_session(self, session_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"stoppingReason", "error"}:
            raise ApiError(400, "finish takes stoppingReason and error only")
        model = validate(SessionUpdate, body)
        assert isinstance(model, SessionUpdate)
        if not (model.stopping_reason or "").strip() and not model.error:
            raise ApiError(400, "stoppingReason is required")
        session = self._session(session_id)
        session["stoppingReason"] = model.stopping_reason
        session["status"] = "FAILED" if model.error else "COMPLETED"
        session["error"] = model.error
        return self._session_reply(session)

    def _create_turn(self, body: Any) -> dict[str, Any]:
        model = validate(TraceBase, body)
        assert isinstance(model, TraceBase)
        if not model.session_id:
            raise ApiError(400, "sessionId is required here")
        session = self._session(model.session_id)
        if session["status"] in ("COMPLETED", "FAILED"):
            session["status"] = "PENDING"  # REOPEN_AND_REEVALUATE, the platform's default policy
        # The next index of the session (after a deletion too: indexes of the remaining turns never repeat).
        index = 1 + max((t["index"] for t in self.turns.values() if t["sessionId"] == model.session_id), default=-1)
        turn: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
        turn.update(id=self._id("inferenceResult"), index=index, createdAt=_now())
        Trace(**json.loads(json.dumps(turn)))
        self.turns[turn["id"]] = turn
        return turn

    def _update_turn(self, turn_id: str, body: Any) -> dict[str, Any]:
        """``PATCH inferenceResults/{id}``: the fields the body sets (null clears one), others untouched."""
        model = validate(TraceUpdate, body)
        turn = self.turns.get(turn_id)
        if turn is None:
            raise ApiError(404, f"Inference result {turn_id} not found")
        fixed = {"session_id", "index", "created_at", "deleted_at"} & model.model_fields_set
        if fixed:
            raise ApiError(400, f"the stand-in does not move, reorder or delete turns ({sorted(fixed)})")
        updated = dict(turn)
        for name, value in model.model_dump(by_alias=True, exclude_unset=True, mode="json").items():
            updated[name] = value
        Trace(**json.loads(json.dumps(updated)))  # the SDK can read it
        self.turns[turn_id] = updated
        return updated

    def _delete_turn(self, turn_id: str) -> dict[str, Any]:
        """``DELETE inferenceResults/{id}`` (the SDK's ``traces.delete``): the turn and its spans; 404 when there
        is no such turn (deleted already)."""
        turn = self.turns.pop(turn_id, None)
        if turn is None:
            raise ApiError(404, f"Inference result {turn_id} not found")
        for span_id in [s["id"] for s in self.spans.values() if s["inferenceResultId"] == turn_id]:
            del self.spans[span_id]
        self.deleted_turns.append(turn)
        return turn

    def _create_spans(self, query: dict[str, list[str]], body: Any) -> dict[str, Any] | list[dict[str, Any]]:
        if not isinstance(body, dict) or set(body) != {"traces"} or not isinstance(body["traces"], list):
            raise ApiError(400, 'the body must be {"traces": [...]}')
        created: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(body["traces"]):
            try:
                model = validate(SpanBase, raw)
                assert isinstance(model, SpanBase)
                if model.trace_id not in self.turns:
                    raise ApiError(400, f"inference result {model.trace_id} not found")
                if model.id and model.id in self.spans:
                    self.duplicate_spans += 1
                    raise ApiError(409, f"span {model.id} already exists")
                if model.latency_ms is not None and model.latency_ms < 0:
                    raise ApiError(400, "negative latency")
            except ApiError as exc:
                errors.append({"index": index, "name": raw.get("name") if isinstance(raw, dict) else None,
                               "reason": str(exc)})
                continue
            span = model.model_dump(by_alias=True, exclude_none=True, mode="json")
            span.setdefault("id", self._id("trace"))
            span["createdAt"] = _now()
            Span(**json.loads(json.dumps(span)))
            self.spans[span["id"]] = span
            created.append(span)
        if created == [] and errors:
            raise ApiError(400, "; ".join(e["reason"] for e in errors))
        if query.get("includeRejected") != ["true"]:
            return created
        reply: dict[str, Any] = {"spans": created}
        if errors:
            reply["partialSuccess"] = {"rejectedSpans": len(errors), "errors": errors}
        return reply

    def _create_metric(self, body: Any) -> dict[str, Any]:
        model = validate(MetricBase, body)
        assert isinstance(model, MetricBase)
        if any(m["name"] == model.name for m in self.metrics.values()):
            raise ApiError(409, f"a metric named {model.name} already exists")
        metric: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
        metric.update(id=self._id("metric"), createdAt=_now())
        Metric(**json.loads(json.dumps(metric)))
        self.metrics[metric["id"]] = metric
        return metric

    def _create_evaluations(self, kind: str, body: Any) -> list[dict[str, Any]]:
        """``evaluations/fromSession`` / ``fromInferenceResult`` with pre-computed scores of self-hosted metrics."""
        anchor = "sessionId" if kind == "fromSession" else "inferenceResultId"
        if not isinstance(body, dict) or anchor not in body or set(body) - {anchor, "metrics", "specificationIds",
                                                                             "runId"}:
            raise ApiError(400, f"{kind} takes {anchor}, metrics, specificationIds and runId")
        if kind == "fromSession":
            session_id, turn_id = str(body["sessionId"]), None
            self._session(session_id)
        else:
            turn = self.turns.get(str(body["inferenceResultId"]))
            if turn is None:
                raise ApiError(404, f"Inference result {body['inferenceResultId']} not found")
            session_id, turn_id = turn["sessionId"], turn["id"]
        metrics = body.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            raise ApiError(400, "metrics must be a non-empty list here (no specifications in the stand-in)")
        created = []
        for item in metrics:
            if not isinstance(item, dict) or set(item) - {"id", "name", "score"}:
                raise ApiError(400, "a metric is {id?, name?, score?}")
            metric = self.metrics.get(str(item.get("id"))) or next(
                (m for m in self.metrics.values() if m["name"] == item.get("name")), None)
            if metric is None:
                raise ApiError(404, f"Metric {item.get('id') or item.get('name')} not found")
            score = item.get("score")
            if str(metric.get("source")).upper() == "SELF_HOSTED" and (
                    isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1):
                raise ApiError(400, f"a self-hosted metric needs a score from 0 to 1, not {score!r}")
            evaluation = {"id": self._id("evaluation"), "metricId": metric["id"], "sessionId": session_id,
                          "inferenceResultId": turn_id, "score": score, "status": "SUCCESS", "createdAt": _now(),
                          "evaluatedAt": _now()}
            Evaluation(**evaluation)
            created.append(evaluation)
        for evaluation in created:
            self.evaluations[evaluation["id"]] = evaluation
        return created

    def _version_get_or_create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"productId", "facts", "name"} or "productId" not in body:
            raise ApiError(400, "get-or-create takes productId, facts and name")
        facts = body.get("facts")
        if not isinstance(facts, dict) or not facts:
            raise ApiError(400, "facts must be a non-empty object")
        for version in self.versions.values():
            if version["productId"] == body["productId"] and version.get("facts") == facts:
                return version
        version_id = self.add_version(body["productId"], body.get("name") or f"v{len(self.versions) + 1}")
        self.versions[version_id]["facts"] = facts
        Version(**self.versions[version_id])
        return self.versions[version_id]


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and body go in separate writes (else ~40 ms a reply)
    protocol_version = "HTTP/1.1"
    api: FakeGaltea

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _serve(self, method: str) -> None:
        api = self.api
        url = urlsplit(self.path)
        path = url.path.strip("/")
        query = parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        api.open.wait()
        if api.delay_s:
            time.sleep(api.delay_s)
        if self.headers.get("Authorization") != f"Bearer {api.api_key}":
            self._reply(401, {"message": "Unauthorized"})
            return
        with api.lock:
            fault = next((f for f in api.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
            elif api.fail_every and method != "GET":
                api._writes += 1
                if api._writes % api.fail_every == 0:
                    fault = Fault(method, path, "status", status=500, times=0)
        if fault is not None and fault.mode == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
            with api.lock:
                api.requests.append((method, path, fault.status))
                api.arrived.append(time.monotonic())
            self._reply(fault.status, {"message": fault.message, "statusCode": fault.status}, headers)
            return
        if fault is not None and fault.mode == "drop_before":
            with api.lock:
                api.requests.append((method, path, 0))
                api.arrived.append(time.monotonic())
            self._drop()
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._reply(400, {"message": "the body is not JSON"})
            return
        with api.lock:
            try:
                status, reply = api.handle(method, path, query, body)
            except ApiError as exc:
                status, reply = exc.status, {"message": str(exc), "statusCode": exc.status}
            api.requests.append((method, path, status))
            api.arrived.append(time.monotonic())
            if status < 300 and method != "GET":
                api.bodies.append((method, path, body))
        if fault is not None and fault.mode == "drop":
            self._drop()
            return
        if fault is not None and fault.mode == "hang":
            time.sleep(fault.hang_s)
        self._reply(status, reply)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")


@contextmanager
def running(api: FakeGaltea | None = None, port: int = 0) -> Iterator[tuple[FakeGaltea, str]]:
    """Serve ``api`` on 127.0.0.1 in a thread for the ``with`` block; yields it and its base URL."""
    api = api or FakeGaltea()
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-galtea", daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--api-key", default="gsk_test_key")
    parser.add_argument("--product", default="prod_demo")
    parser.add_argument("--version-name", action="append", default=[],
                        help="create a version of --product with this name (repeatable)")
    parser.add_argument("--fail-every", type=int, default=0, help="every Nth write answers 500")
    args = parser.parse_args()
    api = FakeGaltea(api_key=args.api_key, fail_every=args.fail_every)
    for name in args.version_name:
        print(f"version {name!r}: {api.add_version(args.product, name)}", flush=True)
    with running(api, args.port) as (_, url):
        print(f"fake Galtea API on {url} (product {args.product})", flush=True)
        try:
            while True:
                time.sleep(5)
                with api.lock:
                    print(f"{len(api.sessions)} sessions, {len(api.turns)} turns, {len(api.spans)} spans, "
                          f"statuses {sorted(s['status'] for s in api.sessions.values())}", flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
