"""Projects (issue 12, point 2): ``serve --tokens FILE`` maps each token to one project, and a session is
(project, custom id, version), so a token writes only its own project's sessions.

The adversarial finding this fixes: a second application appended a turn to another app's session (same custom
id and version, the one shared token) and turned it from COMPLETED into FAILED. Here two real OTLP exporters, each
with its own token, write the same custom id + version, and one even plants a failing LLM span inside the other's
trace (as a child of its session span): they stay two sessions and neither touches the other's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from galtea_otel import attributes as A
from galtea_otel.pipeline import read_session
from galtea_otel.serve.options import ConfigError
from galtea_otel.serve.projects import Tokens, load_tokens
from galtea_otel.serve.server import Receiver
from galtea_otel.store import open_store

from ..decode.samples import llm_spans
from ..pipeline.spans import conversation
from .conftest import ReceiverFactory

ROOT = Path(__file__).resolve().parents[2]


def tokens_file(path: Path, mapping: dict[str, list[str]]) -> str:
    path.write_text(json.dumps(mapping))
    return str(path)


def exporter(receiver: Receiver, protocol: str, token: str) -> SpanExporter:
    if protocol == "http":
        assert receiver.http_address is not None
        address = receiver.http_address
        return HttpExporter(endpoint=f"http://{address.host}:{address.port}/v1/traces",
                            headers={"Authorization": f"Bearer {token}"})
    assert receiver.grpc_address is not None
    return GrpcExporter(endpoint=f"{receiver.grpc_address.host}:{receiver.grpc_address.port}", insecure=True,
                        headers={"authorization": f"Bearer {token}"})


class App:
    """An application: its own TracerProvider exporting through a real OTLP exporter, span by span."""

    def __init__(self, name: str, span_exporter: SpanExporter) -> None:
        self.exporter = span_exporter
        self.provider = TracerProvider(resource=Resource.create({"service.name": name}), shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        self.tracer = self.provider.get_tracer(name)

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture(params=["http", "grpc"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def two_projects(tmp_path: Path, make_receiver: ReceiverFactory) -> Iterator[Receiver]:
    path = tokens_file(tmp_path / "tokens.json", {"shop": ["tok-shop"], "bank": ["tok-bank-1", "tok-bank-2"]})
    with make_receiver(tokens_file=path) as receiver:
        yield receiver


def test_two_apps_with_the_same_custom_id_and_version_stay_two_sessions(
    two_projects: Receiver, protocol: str
) -> None:
    store = two_projects.pipeline.store  # type: ignore[union-attr]
    shop = App("shop", exporter(two_projects, protocol, "tok-shop"))
    bank = App("bank", exporter(two_projects, protocol, "tok-bank-2"))
    try:
        conversation(shop.tracer, "shared", "1.0", 2)  # ends COMPLETED
        [done] = store.list_sessions()
        assert (done.project, done.status, done.turn_count) == ("shop", "COMPLETED", 2)

        # The other app: the same custom id and version, a failing conversation...
        conversation(bank.tracer, "shared", "1.0", 1, fail=True)
        # ... and an unkeyed failing LLM span planted inside the shop's trace, under its session span.
        session_span = next(s for s in _stored_spans(store, "shop") if s.name == "galtea.session")
        parent = NonRecordingSpan(SpanContext(int(session_span.trace_id, 16), int(session_span.span_id, 16),
                                              is_remote=True, trace_flags=TraceFlags(1)))
        with bank.tracer.start_as_current_span(
            "chat", context=trace.set_span_in_context(parent),
            attributes={A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: "injected"},
        ) as planted:
            planted.set_status(Status(StatusCode.ERROR, "boom"))
    finally:
        shop.close()
        bank.close()

    sessions = {s.project: s for s in store.list_sessions(limit=-1)}
    assert set(sessions) == {"shop", "bank"}
    assert {(s.custom_id, s.version) for s in sessions.values()} == {("shared", "1.0")}
    assert (sessions["shop"].status, sessions["shop"].turn_count) == ("COMPLETED", 2)
    assert sessions["bank"].status == "FAILED"
    shop_detail = read_session(store, ("shared", "1.0", "shop"))
    assert shop_detail is not None and shop_detail.project == "shop" and shop_detail.status == "COMPLETED"
    assert all(t.input != "injected" and t.status == "GENERATED" for t in shop_detail.inference_results)
    # The planted span is the bank's, waiting (unkeyed) in the bank's project: never part of the shop's trace.
    planted_rows = [r for r in _stored_spans(store, "bank") if r.name == "chat" and r.input == "injected"]
    assert len(planted_rows) == 1 and planted_rows[0].custom_id is None


def _stored_spans(store: object, project: str) -> list[object]:
    import sqlite3

    from galtea_otel.store.rows import row_from_tuple
    from galtea_otel.translate.row import COLUMNS

    path = store.path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as conn:
        return [row_from_tuple(r) for r in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM spans WHERE project = ?", (project,))]


def test_an_unknown_token_is_refused_and_stores_nothing(two_projects: Receiver, protocol: str) -> None:
    store = two_projects.pipeline.store  # type: ignore[union-attr]
    span_exporter = exporter(two_projects, protocol, "tok-nobody")
    try:
        assert span_exporter.export(llm_spans(sessions=1, turns=1)) is SpanExportResult.FAILURE
    finally:
        span_exporter.shutdown()  # type: ignore[no-untyped-call]
    assert store.list_sessions() == []


def test_the_project_comes_from_the_token_never_from_the_spans(two_projects: Receiver) -> None:
    """A span that names a project in its attributes or resource is still its token's project's."""
    store = two_projects.pipeline.store  # type: ignore[union-attr]
    provider = TracerProvider(resource=Resource.create({"galtea.project": "shop", "project": "shop"}))
    span_exporter = exporter(two_projects, "http", "tok-bank-1")
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    try:
        conversation(provider.get_tracer("forger"), "forged", "1.0", 1)
    finally:
        provider.shutdown()
    [session] = store.list_sessions()
    assert session.project == "bank"


def test_a_token_file_token_is_the_default_project_beside_tokens(tmp_path: Path,
                                                                 make_receiver: ReceiverFactory) -> None:
    path = tokens_file(tmp_path / "tokens.json", {"shop": ["tok-shop"]})
    with make_receiver(tokens_file=path, token="tok-default") as receiver:
        store = receiver.pipeline.store  # type: ignore[union-attr]
        for token in ("tok-default", "tok-shop"):
            app = App("app", exporter(receiver, "http", token))
            try:
                conversation(app.tracer, "same", "1.0", 1)
            finally:
                app.close()
        assert sorted(s.project for s in store.list_sessions()) == ["default", "shop"]


def test_without_tokens_everything_is_the_default_project(make_receiver: ReceiverFactory) -> None:
    with make_receiver() as receiver:
        store = receiver.pipeline.store  # type: ignore[union-attr]
        app = App("app", exporter(receiver, "grpc", "anything"))
        try:
            conversation(app.tracer, "solo", "1.0", 1)
        finally:
            app.close()
        [session] = store.list_sessions()
        assert (session.project, session.status) == ("default", "COMPLETED")


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "is not JSON"),
    ("[]", "must be a JSON object"),
    ("{}", "must be a JSON object"),
    ('{"a b": ["t"]}', "is not a project name"),
    ('{"shop": []}', "non-empty list of tokens"),
    ('{"shop": ["ok", ""]}', "token 2 of project 'shop'"),
    ('{"shop": [" padded "]}', "token 1 of project 'shop'"),
    ('{"shop": ["t1"], "bank": ["t1"]}', "is also a token of project 'shop'"),
])
def test_a_bad_tokens_file_is_a_clear_error_that_never_names_a_token(tmp_path: Path, content: str,
                                                                     message: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_tokens(path)
    assert "t1" not in str(caught.value) and "padded" not in str(caught.value)


def test_tokens_are_compared_against_every_known_token() -> None:
    """The lookup runs every comparison whichever token matches (constant time over the table)."""
    import hmac

    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    tokens = Tokens.__new__(Tokens)
    from galtea_otel.serve import projects

    tokens._table = projects._Table({"t-a": "a", "t-b": "b", "t-c": "c"})
    hmac.compare_digest = counting  # type: ignore[assignment]
    try:
        assert tokens.project_of(b"t-a") == "a"
        first = len(calls)
        assert tokens.project_of(b"t-c") == "c"
        assert tokens.project_of(b"nope") is None
    finally:
        hmac.compare_digest = real
    assert first == 3 and len(calls) == 9


def test_a_bad_tokens_file_is_a_usage_error_of_serve(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from galtea_otel.serve.cli import serve

    path = tmp_path / "tokens.json"
    path.write_text('{"shop": "not-a-list"}')
    result = CliRunner().invoke(serve, ["--tokens", str(path), "--store", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 2 and "non-empty list of tokens" in result.output


# --- SIGHUP with a real `galtea-otel serve` process ----------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Log:
    """The receiver's stderr, read by a thread; ``wait_for`` blocks until a line holds a text."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for n, line in enumerate(self.lines[after:], after):
                    if text in line:
                        return n + 1
                left = deadline - time.monotonic()
                assert left > 0, f"no {text!r} in the receiver's log:\n{''.join(self.lines)}"
                self._changed.wait(left)


def _export(port: int, token: str) -> SpanExportResult:
    span_exporter = HttpExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        return span_exporter.export(llm_spans(sessions=1, turns=1))
    finally:
        span_exporter.shutdown()  # type: ignore[no-untyped-call]


def test_sighup_rereads_the_tokens_file_and_a_bad_one_keeps_the_tokens_in_force(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'hup.db'}"
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"shop": ["tok-old"]}))
    port = _free_port()
    command = [sys.executable, "-c", "from galtea_otel.cli.main import main; main()", "serve", "--store", store_url,
               "--http", f"127.0.0.1:{port}", "--grpc", "off", "--tokens", str(path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        log = _Log(process.stderr)
        seen = log.wait_for("receiver ready")
        assert _export(port, "tok-old") is SpanExportResult.SUCCESS

        path.write_text(json.dumps({"shop": ["tok-new"], "bank": ["tok-bank"]}))
        process.send_signal(signal.SIGHUP)
        seen = log.wait_for("SIGHUP: re-read", seen)
        assert _export(port, "tok-old") is SpanExportResult.FAILURE  # 401: no longer a token
        assert _export(port, "tok-new") is SpanExportResult.SUCCESS
        assert _export(port, "tok-bank") is SpanExportResult.SUCCESS

        path.write_text('{"shop": ["tok-new"], ')  # a half-written file
        process.send_signal(signal.SIGHUP)
        log.wait_for("keeping the 2 token(s) in force", seen)
        assert _export(port, "tok-new") is SpanExportResult.SUCCESS
        assert _export(port, "tok-bank") is SpanExportResult.SUCCESS
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = "".join(log.lines)
    assert "tok-new" not in text and "tok-old" not in text and "tok-bank" not in text
    store = open_store(store_url)
    try:
        assert sorted(s.project for s in store.list_sessions(limit=-1)) == ["bank", "shop"]
    finally:
        store.close()


# --- in process, and the CLI ------------------------------------------------------------------------------------

def test_configure_project_stores_the_apps_sessions_under_it(tmp_path: Path) -> None:
    import galtea_otel

    url = f"sqlite:///{tmp_path / 'app.db'}"
    provider = TracerProvider(shutdown_on_exit=False)
    with pytest.raises(ValueError, match="not a project name"):
        galtea_otel.configure(url, tracer_provider=provider, project="no spaces")
    galtea_otel.configure(url, tracer_provider=provider, project="shop")
    try:
        with galtea_otel.session(custom_id="conv-1", version="1.0"), galtea_otel.span("step"):
            pass
        assert galtea_otel.flush()
    finally:
        galtea_otel.shutdown()
    store = open_store(url)
    try:
        [session] = store.list_sessions()
        assert (session.custom_id, session.project) == ("conv-1", "shop")
    finally:
        store.close()


@pytest.fixture
def two_project_store(tmp_path: Path) -> str:
    from galtea_otel.pipeline import Pipeline

    from ..pipeline.spans import collect, sdk_tracer

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(url)
    pipeline = Pipeline(store)
    for project, turns in (("shop", 1), ("bank", 2)):
        with sdk_tracer() as (tracer, memory):
            conversation(tracer, "shared", "1.0", turns)
            pipeline.ingest(collect(memory), project)
    store.close()
    return url


def _cli(url: str, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from galtea_otel.cli.main import main

    result = CliRunner().invoke(main, ["--store", url, *args])
    return result.exit_code, result.output


def test_sessions_list_and_show_take_project(two_project_store: str) -> None:
    code, out = _cli(two_project_store, "sessions", "list", "--json")
    assert code == 0 and sorted(s["project"] for s in json.loads(out)) == ["bank", "shop"]
    code, out = _cli(two_project_store, "sessions", "list", "--project", "bank", "--json")
    assert code == 0 and [(s["project"], s["turn_count"]) for s in json.loads(out)] == [("bank", 2)]
    for project, turns in (("shop", 1), ("bank", 2)):
        code, out = _cli(two_project_store, "sessions", "show", "shared", "--project", project, "--json")
        detail = json.loads(out)
        assert code == 0 and (detail["project"], detail["turn_count"]) == (project, turns)
    code, out = _cli(two_project_store, "sessions", "show", "shared", "--project", "bank")
    assert code == 0 and "project bank" in out
    code, out = _cli(two_project_store, "sessions", "show", "shared", "--project", "nobody")
    assert code != 0 and "in project 'nobody'" in out
    code, out = _cli(two_project_store, "annotate", "shared", "--project", "shop", "--name", "ok", "--label", "yes")
    assert code == 0
    code, out = _cli(two_project_store, "sessions", "list", "--eval", "ok=yes", "--json")
    assert code == 0 and [s["project"] for s in json.loads(out)] == ["shop"]


def test_the_ui_filters_by_project_and_shows_it(two_project_store: str) -> None:
    import urllib.request

    from galtea_otel.ui.server import serving_in_thread

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)

    def get(base: str, path: str) -> tuple[int, str, str]:
        try:
            with opener.open(base.rstrip("/") + path, timeout=30) as response:
                return response.status, response.read().decode(), ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers.get("Location") or ""

    store = open_store(two_project_store)
    try:
        with serving_in_thread(store, port=0) as server:
            status, page, _ = get(server.url, "/api/sessions?project=bank")
            assert status == 200 and [s["project"] for s in json.loads(page)["sessions"]] == ["bank"]
            status, page, _ = get(server.url, "/?project=shop")
            assert status == 200 and "/sessions/shared/1.0?project=shop" in page and "project=bank" not in page
            status, page, _ = get(server.url, "/sessions/shared/1.0?project=bank")
            assert status == 200 and "bank" in page
            status, page, _ = get(server.url, "/sessions/shared/1.0.json?project=shop")
            assert status == 200 and json.loads(page)["project"] == "shop"
            status, page, _ = get(server.url, "/sessions/shared/1.0?project=nobody")
            assert status == 404
        with serving_in_thread(store, port=0, project="bank") as server:  # galtea-otel ui --project bank
            status, _, location = get(server.url, "/")
            assert status == 303 and location == "/?project=bank"
            status, page, _ = get(server.url, "/api/sessions")
            assert [s["project"] for s in json.loads(page)["sessions"]] == ["bank"]
    finally:
        store.close()
