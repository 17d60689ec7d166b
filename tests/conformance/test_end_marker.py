"""The end marker as the README documents it ("Ending a session from any language"): any app, with any
OpenTelemetry SDK, ends a session that has no session span by sending a span with ``galtea.session.event=end``
and the session's key. Here the real Python SDK plays that app; tests/conformance/test_node_session.py runs the
Node.js example."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.trace import Status, StatusCode

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import open_store
from tests.pipeline.spans import collect, sdk_tracer

TURN = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m-1"}


def session_after(tmp_path: Path, key: dict[str, str], end: dict[str, str], status: Status | None = None,
                  name: str = "galtea.session.end") -> tuple[str, str | None, int]:
    """(status, error, turns) of the session the turn span (with ``key``) belongs to, after an end marker."""
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("chat m-1", attributes={**TURN, **key}):
            pass
        marker = tracer.start_span(name, attributes={**end, "galtea.session.event": "end"})
        if status is not None:
            marker.set_status(status)
        marker.end(end_time=marker.start_time)  # type: ignore[attr-defined]
        spans = collect(exporter)
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        Pipeline(store, PipelineSettings(default_version="default-1")).ingest(spans)
        [summary] = store.list_sessions(limit=10)
        detail = read_session(store, (summary.custom_id, summary.version))
        assert detail is not None
        return detail.status, detail.error, len(detail.inference_results)
    finally:
        store.close()


def test_the_galtea_key_and_version(tmp_path: Path) -> None:
    key = {"galtea.session.custom_id": "conv-1", "galtea.session.version": "1.0"}
    assert session_after(tmp_path / "a", key, key) == ("COMPLETED", None, 1)
    assert session_after(tmp_path / "b", key, key, name="anything") == ("COMPLETED", None, 1)  # the name is not read


def test_any_session_key_with_the_default_version(tmp_path: Path) -> None:
    key = {"session.id": "conv-2"}
    assert session_after(tmp_path, key, key) == ("COMPLETED", None, 1)


def test_status_error_fails_the_session_with_its_text(tmp_path: Path) -> None:
    key = {"galtea.session.custom_id": "conv-3", "galtea.session.version": "1.0"}
    with_text = {**key, "galtea.span.error": "the user gave up"}
    assert session_after(tmp_path / "a", key, with_text, Status(StatusCode.ERROR, "ignored")) == \
        ("FAILED", "the user gave up", 1)
    assert session_after(tmp_path / "b", key, key, Status(StatusCode.ERROR, "timed out")) == \
        ("FAILED", "timed out", 1)
    # galtea.span.error without the ERROR status is not a failure.
    assert session_after(tmp_path / "c", key, with_text) == ("COMPLETED", None, 1)
