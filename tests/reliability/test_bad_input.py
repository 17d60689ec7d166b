"""Bad input everywhere (issue 4, point 5): invalid arguments to the public API raise clear errors at the call,
before anything is recorded (no span started, nothing in the store, the configuration unchanged); a corrupt or
foreign SQLite file, or a URL of an unknown scheme, given as the store gives a one-line error, never a traceback,
in the CLI and in ``configure()``."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel import attributes as A
from galtea_otel.config import current
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.store import open_store
from tests.pipeline.spans import conversation, sdk_tracer
from tests.reliability.receiver_proc import command_exit

# --- the public API ---------------------------------------------------------------------------------------------------


@dataclass
class App:
    """An application configured on a real SQLite store; ``memory`` sees every span started and ended."""

    provider: TracerProvider
    memory: InMemorySpanExporter
    store_url: str
    path: Path

    def stored_spans(self) -> int:
        assert galtea_otel.flush()
        if not self.path.exists():
            return 0
        with sqlite3.connect(self.path) as conn:
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])

    def assert_nothing_recorded(self) -> None:
        assert self.memory.get_finished_spans() == ()
        assert self.stored_spans() == 0


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    galtea_otel.stats.reset()
    provider = TracerProvider(shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    path = tmp_path / "app.db"
    galtea_otel.configure(f"sqlite:///{path}", tracer_provider=provider)
    galtea_otel.register_test_cases([{"id": "tc-1", "input": "hi", "context": "ctx"}])
    yield App(provider, memory, f"sqlite:///{path}", path)
    galtea_otel.shutdown()


class Unserializable:
    pass


BAD_SESSIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"version": "1"}, TypeError, "custom_id"),  # missing
    ({"custom_id": None, "version": "1"}, ValueError, "custom_id is required"),
    ({"custom_id": "", "version": "1"}, ValueError, "custom_id is required"),
    ({"custom_id": " \t", "version": "1"}, ValueError, "custom_id is required"),
    ({"custom_id": b"conv", "version": "1"}, TypeError, "custom_id must be a str, not bytes"),
    ({"custom_id": "c"}, TypeError, "version"),  # missing
    ({"custom_id": "c", "version": 1.4}, TypeError, 'version must be a str, not float .*version="1.4"'),
    ({"custom_id": "c", "version": 2}, TypeError, "version must be a str, not int"),
    ({"custom_id": "c", "version": ""}, ValueError, "version is required"),
    ({"custom_id": "c", "version": "1", "test_case_id": "never-registered"}, ValueError,
     "unknown test case 'never-registered': register it"),
    ({"custom_id": "c", "version": "1", "test_case_id": 7}, TypeError, "test_case_id must be a str"),
    ({"custom_id": "c", "version": "1", "metadata": {"x": Unserializable()}}, TypeError,
     "metadata must be JSON-serializable"),
    ({"custom_id": "c", "version": "1", "metadata": {"x": {1, 2}}}, TypeError, "JSON-serializable"),
    ({"custom_id": "c", "version": "1", "metadata": {"x": b"raw"}}, TypeError, "JSON-serializable"),
    ({"custom_id": "c", "version": "1", "metadata": {"x": float("nan")}}, ValueError, "JSON-serializable"),
    ({"custom_id": "c", "version": "1", "metadata": {"x": float("inf")}}, ValueError, "JSON-serializable"),
    ({"custom_id": "c", "version": "1", "metadata": ["a", "list"]}, TypeError, "metadata must be a mapping"),
    ({"custom_id": "c", "version": "1", "context": 3}, TypeError, "context must be a str"),
    ({"custom_id": "c", "version": "1", "test_case_id": "tc-1", "context": "x"}, ValueError, "drop context="),
    ({"custom_id": "c", "version": "1", "is_production": True, "test_case_id": "tc-1"}, ValueError,
     "cannot have a test_case_id"),
    ({"custom_id": "c", "version": "1", "is_production": False}, ValueError, "requires a test_case_id"),
]


@pytest.mark.parametrize("opener", [galtea_otel.session, galtea_otel.continue_session])
@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_SESSIONS)
def test_invalid_session_arguments_raise_at_the_call_and_record_nothing(
    app: App, opener: Callable[..., Any], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        opener(**kwargs)  # raised by the call itself, before any ``with``
    app.assert_nothing_recorded()


def test_invalid_end_session_arguments_raise_and_record_nothing(app: App) -> None:
    with pytest.raises(ValueError, match="custom_id is required"):
        galtea_otel.end_session("", "1")
    with pytest.raises(TypeError, match="version must be a str"):
        galtea_otel.end_session("c", 1)  # type: ignore[arg-type]
    app.assert_nothing_recorded()


def test_set_metadata_refuses_what_is_not_json_and_keeps_the_previous_metadata(app: App) -> None:
    with galtea_otel.session(custom_id="meta", version="1", metadata={"a": 1}) as session:
        with pytest.raises(TypeError, match="JSON-serializable"):
            session.set_metadata(bad=Unserializable())
        assert session.metadata == {"a": 1}
        session.set_metadata(b=2)
    assert galtea_otel.flush()
    store = open_store(app.store_url)
    try:
        detail = read_session(store, ("meta", "1"))
    finally:
        store.close()
    assert detail is not None and detail.metadata == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "TOOLS"}, "unknown span type 'TOOLS': one of AGENT, CHAIN"),
        ({"type": "tool call"}, "unknown span type"),
        ({"type": 3}, "unknown span type 3"),
        ({"type": "SESSION"}, "use session\\(\\) for sessions"),
    ],
)
def test_span_with_an_unknown_type_raises_at_the_call(app: App, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        galtea_otel.span("step", **kwargs)
    with pytest.raises(ValueError, match=message):
        galtea_otel.span(**kwargs)(lambda: None)  # the decorator form: refused when decorating
    app.assert_nothing_recorded()


def test_record_usage_drops_invalid_counts_without_raising(app: App) -> None:
    """Decision: ``record_usage`` is fed numbers read from LLM responses at run time, so an invalid one must not
    break the application's request (RELIABILITY 18): it is dropped (never recorded), counted, logged once."""

    @galtea_otel.inference(model="m")
    def chat(prompt: str) -> str:
        galtea_otel.record_usage(input_tokens=-3, output_tokens="many", cache_read_input_tokens=1.5,  # type: ignore[arg-type]
                                 cost=float("nan"))
        return "ok"

    with galtea_otel.session(custom_id="usage", version="1"):
        assert chat("hi") == "ok"
    (span,) = [s for s in app.memory.get_finished_spans() if s.name.endswith("chat")]
    attributes = dict(span.attributes or {})
    for key in (A.GEN_AI_INPUT_TOKENS, A.GEN_AI_OUTPUT_TOKENS, A.GEN_AI_CACHE_READ_TOKENS, A.INFERENCE_COST):
        assert key not in attributes
    assert galtea_otel.stats()["internal_errors.record_usage.invalid"] == 4
    assert galtea_otel.flush()
    store = open_store(app.store_url)
    try:
        detail = read_session(store, ("usage", "1"))
    finally:
        store.close()
    assert detail is not None
    (turn,) = detail.inference_results
    assert (turn.input_tokens, turn.output_tokens, turn.cost) == (None, None, None)


BAD_CONFIGURE: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"redact": "not callable"}, TypeError, "redact=...\\) must be a callable"),
    ({"redact_secrets": "yes"}, TypeError, "redact_secrets=...\\) must be True or False"),
    ({"capture_content": "false"}, TypeError, "capture_content=...\\) must be True or False"),
    ({"max_value_bytes": 10}, ValueError, "max_value_bytes=...\\) must be an integer >= 256"),
    ({"max_value_bytes": True}, ValueError, "max_value_bytes"),
    ({"max_value_bytes": "64k"}, ValueError, "max_value_bytes"),
    ({"max_queue_size": 0}, ValueError, "max_queue_size"),
    ({"store": "sqlite:///x.db", "exporter": InMemorySpanExporter()}, ValueError, "either exporter= or store="),
    ({"tracer_provider": object()}, TypeError, "needs an OpenTelemetry SDK TracerProvider"),
    ({"store": "mysql://db.example/sessions"}, ValueError,
     "unknown store URL scheme 'mysql'; use one of sqlite://, postgresql://, postgres://"),
    ({"store": "sqlite:///no/such/folder/s.db"}, ValueError, "the folder no/such/folder does not exist"),
    ({"store": 42}, TypeError, "store URL or a Store, not int"),
    ({"test_cases": [{"input": "no id"}]}, ValueError, "id"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_CONFIGURE)
def test_invalid_configure_arguments_raise_and_change_nothing(
    app: App, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    before = current()
    with pytest.raises(error, match=message):
        galtea_otel.configure(**{"tracer_provider": app.provider, **kwargs})
    assert current() is before
    with galtea_otel.session(custom_id="still-works", version="1"):
        pass
    assert app.stored_spans() == 2  # the previous configuration still records


def test_configure_refuses_a_file_that_is_not_sqlite(app: App, tmp_path: Path) -> None:
    garbage = tmp_path / "notes.db"
    garbage.write_bytes(b"these are my notes, not a database\n" * 100)
    before = current()
    with pytest.raises(ValueError, match=r"notes\.db is not a SQLite database"):
        galtea_otel.configure(f"sqlite:///{garbage}", tracer_provider=app.provider)
    with pytest.raises(ValueError, match="is not a SQLite database"):
        galtea_otel.configure(str(garbage), tracer_provider=app.provider)  # a bare path too
    assert current() is before
    assert garbage.read_bytes().startswith(b"these are my notes")  # untouched


def test_a_foreign_sqlite_store_fails_in_the_export_thread_with_one_clear_error_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store opens in the export thread: a foreign SQLite file (valid header, someone else's tables) passes
    ``configure()``; the application runs on; one error line without a traceback names the file, and the lost
    spans are counted."""
    foreign = tmp_path / "crm.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    galtea_otel.stats.reset()
    caplog.set_level(logging.DEBUG, logger="galtea_otel")
    galtea_otel.configure(f"sqlite:///{foreign}", tracer_provider=TracerProvider(shutdown_on_exit=False))
    try:
        for i in range(3):
            with galtea_otel.session(custom_id=f"c{i}", version="1"):
                pass
            galtea_otel.flush()
    finally:
        galtea_otel.shutdown()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert not errors[0].exc_info  # no traceback: the message says it all
    message = errors[0].getMessage()
    assert "crm.db is a SQLite database of something else" in message and "spans_lost" in message
    counters = galtea_otel.stats()
    assert counters["export_failures"] >= 1 and counters["spans_lost"] == 6  # 3 sessions x (span + start marker)
    with sqlite3.connect(foreign) as conn:  # the foreign database is left as it was
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["customers"]


# --- stores given to the CLI ------------------------------------------------------------------------------------------


def _galtea_store(path: Path) -> None:
    """A real galtea-otel store with sessions in it."""
    store = open_store(f"sqlite:///{path}")
    with sdk_tracer() as (tracer, exporter):
        for i in range(20):
            conversation(tracer, f"conv-{i}", "1", 3)
    from galtea_otel.decode.sdk import from_sdk_spans

    Pipeline(store).ingest(from_sdk_spans(exporter.get_finished_spans()))
    store.close()


def _corrupt_pages(path: Path) -> None:
    _galtea_store(path)
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096
    data[4096:len(data) - 512] = b"\xa5" * (len(data) - 512 - 4096)  # every page but the first
    path.write_bytes(bytes(data))


def _make(kind: str, folder: Path) -> str:
    path = folder / f"{kind}.db"
    if kind == "random-bytes":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "text-file":
        path.write_text("id,name\n1,alice\n")
    elif kind == "truncated-header":
        path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    elif kind == "foreign-sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    elif kind == "corrupt-pages":
        _corrupt_pages(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "unknown-scheme":
        return "mongodb://localhost/sessions"
    elif kind == "newer-schema":
        _galtea_store(path)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE galtea_meta SET value = '999' WHERE key = 'schema_version'")
    return f"sqlite:///{path}"


CLI_CASES = [
    ("random-bytes", "is not a usable SQLite database"),
    ("text-file", "is not a usable SQLite database"),
    ("truncated-header", "SQLite"),
    ("foreign-sqlite", r"is a SQLite database of something else \(tables: invoices\)"),
    ("corrupt-pages", "malformed"),
    ("directory", "directory.db"),
    ("unknown-scheme", "unknown store URL scheme 'mongodb'.*use one of sqlite://, postgresql://, postgres://"),
    ("newer-schema", "newer than this galtea-otel"),
]


@pytest.mark.parametrize(("kind", "message"), CLI_CASES, ids=[case[0] for case in CLI_CASES])
@pytest.mark.parametrize("command", [["sessions", "list"], ["sessions", "show", "conv-1"], ["test-cases", "list"]])
def test_the_cli_gives_one_clear_line_for_a_bad_store(
    tmp_path: Path, kind: str, message: str, command: list[str]
) -> None:
    import re

    url = _make(kind, tmp_path)
    done = command_exit(["--store", url, *command])
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("kind", ["random-bytes", "foreign-sqlite", "unknown-scheme"])
def test_the_receiver_refuses_to_start_on_a_bad_store_with_one_clear_line(tmp_path: Path, kind: str) -> None:
    url = _make(kind, tmp_path)
    done = command_exit(["serve", "--store", url, "--http", "127.0.0.1:0", "--grpc", "off"])
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr
