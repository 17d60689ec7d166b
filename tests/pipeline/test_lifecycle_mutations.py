"""Tests that catch mutations of the session lifecycle (issue 12 point 7), at the pipeline level on a real SQLite
file: the newest end decides (end, reopen, end again, in any order of arrival); the late-span boundary (a span
that starts exactly when the session ended is not late: SESSION_MODEL section 3 says "started *after* the
session ended"); and each session key of the conventions table puts a span in its session."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from galtea_otel import attributes as A
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SessionDetail
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import STATUS_ERROR, STATUS_UNSET, SpanData
from galtea_otel.store.sqlite import SQLiteStore

T0 = 1_700_000_000 * 10**9
SECOND = 10**9
_ids = itertools.count(1)


def _span(name: str, start: int, end: int, attributes: dict[str, object], *, trace: int | None = None,
          status: int = STATUS_UNSET, message: str = "") -> SpanData:
    n = next(_ids)
    return SpanData(trace_id=f"{trace if trace is not None else n:032x}", span_id=f"{n:016x}",
                    parent_span_id=None, name=name, start_ns=start, end_ns=end, status_code=status,
                    status_message=message, attributes=attributes)  # type: ignore[arg-type]


KEY = {A.SESSION_CUSTOM_ID: "conv", A.SESSION_VERSION: "1"}


def turn(start: int, text: str) -> SpanData:
    return _span("chat", start, start + SECOND, {**KEY, A.SPAN_TYPE: A.TYPE_GENERATION, A.SPAN_INPUT: text})


def end_marker(at: int, error: str | None = None) -> SpanData:
    return _span("galtea.session.end", at, at, {**KEY, A.SESSION_EVENT: "end"},
                 status=STATUS_ERROR if error else STATUS_UNSET, message=error or "")


def _ingest(tmp_path: Path, batches: Sequence[Sequence[SpanData]], **settings: object) -> SessionDetail:
    store = SQLiteStore(f"sqlite:///{tmp_path / f'{next(_ids)}.db'}")
    try:
        pipeline = Pipeline(store, PipelineSettings(**settings))  # type: ignore[arg-type]
        for batch in batches:
            pipeline.ingest(list(batch))
        detail = read_session(store, ("conv", "1"))
    finally:
        store.close()
    assert detail is not None
    return detail


def _orders(spans: list[SpanData]) -> list[list[list[SpanData]]]:
    """All at once; one per request in order; one per request reversed; the newest end first, then the rest."""
    newest_end = max((s for s in spans if s.attributes.get(A.SESSION_EVENT) == "end"), key=lambda s: s.end_ns)
    rest = [s for s in spans if s is not newest_end]
    return [[spans], [[s] for s in spans], [[s] for s in reversed(spans)], [[newest_end], rest]]


@pytest.mark.parametrize("order", range(4), ids=["one-batch", "in-order", "reversed", "newest-end-first"])
@pytest.mark.parametrize(("first_error", "second_error", "status", "error"), [
    (None, "second end failed", "FAILED", "second end failed"),
    ("first end failed", None, "COMPLETED", None),
])
def test_end_reopen_end_the_newest_end_decides(
    tmp_path: Path, order: int, first_error: str | None, second_error: str | None, status: str, error: str | None
) -> None:
    """Ended, reopened by a turn that started after the end, ended again: the second end gives the status and
    the error, whatever the order the spans arrive in."""
    spans = [turn(T0, "one"), end_marker(T0 + 2 * SECOND, first_error), turn(T0 + 3 * SECOND, "two"),
             end_marker(T0 + 5 * SECOND, second_error)]
    detail = _ingest(tmp_path, _orders(spans)[order])
    assert (detail.status, detail.error) == (status, error)
    assert [t.input for t in detail.inference_results] == ["one", "two"]


def test_a_turn_after_the_last_end_reopens_the_session(tmp_path: Path) -> None:
    spans = [turn(T0, "one"), end_marker(T0 + 2 * SECOND, "failed"), turn(T0 + 3 * SECOND, "two")]
    for batches in _orders(spans):
        detail = _ingest(tmp_path, batches)
        assert (detail.status, detail.error) == ("PENDING", None)


@pytest.mark.parametrize("policy", ["reopen", "ignore", "reject"])
def test_a_span_starting_exactly_at_the_end_is_not_late(tmp_path: Path, policy: str) -> None:
    """Started at the very nanosecond the session ended: not *after* it; it belongs to the ended session."""
    end = T0 + 2 * SECOND
    detail = _ingest(tmp_path, [[turn(T0, "one"), end_marker(end), turn(end, "at the end")]], late_spans=policy)
    assert detail.status == "COMPLETED"
    assert [t.input for t in detail.inference_results] == ["one", "at the end"]


@pytest.mark.parametrize(("policy", "status", "turns"), [
    ("reopen", "PENDING", ["one", "just after"]), ("ignore", "COMPLETED", ["one"]), ("reject", "COMPLETED", ["one"]),
])
def test_a_span_starting_one_nanosecond_after_the_end_is_late(
    tmp_path: Path, policy: str, status: str, turns: list[str]
) -> None:
    end = T0 + 2 * SECOND
    detail = _ingest(tmp_path, [[turn(T0, "one"), end_marker(end), turn(end + 1, "just after")]],
                     late_spans=policy)
    assert detail.status == status
    assert [t.input for t in detail.inference_results] == turns


# Every session key of the conventions table, written out here (not read from the table): removing a row from
# the table fails its case. ``langfuse.session.id`` is what Langfuse's OTLP ingestion reads as the session, and
# what applications and exporters that target Langfuse set on their spans.
SESSION_KEYS = [
    "galtea.session.custom_id",
    "gen_ai.conversation.id",
    "session.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
    "langsmith.metadata.thread_id",
    "langsmith.metadata.session_id",
    "langsmith.metadata.conversation_id",
    "thread_id",
    "ai.telemetry.metadata.sessionId",
]


@pytest.mark.parametrize("key", SESSION_KEYS)
def test_each_session_key_of_the_conventions_table_puts_a_span_in_its_session(tmp_path: Path, key: str) -> None:
    """An LLM span whose only session key is ``key`` (on the span itself, or on its trace's root) lands in the
    session it names, not in a session of its own trace."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        pipeline = Pipeline(store, PipelineSettings(hold_seconds=0.0))
        llm = {A.SPAN_TYPE: A.TYPE_GENERATION, "gen_ai.operation.name": "chat", A.SPAN_INPUT: "hi"}
        own = _span("chat", T0, T0 + SECOND, {key: "by-key", **llm})
        root = _span("agent", T0, T0 + 3 * SECOND, {key: "by-root"}, trace=4242)
        child = SpanData(trace_id=root.trace_id, span_id=f"{next(_ids):016x}", parent_span_id=root.span_id,
                         name="chat", start_ns=T0 + SECOND, end_ns=T0 + 2 * SECOND, attributes=llm)
        pipeline.ingest([own, child, root])
        pipeline.sweep(now_ns=T0 + 3600 * SECOND)  # what is still unkeyed becomes a session of its trace
        found = sorted(s.custom_id for s in store.list_sessions())
    finally:
        store.close()
    assert found == ["by-key", "by-root"]
