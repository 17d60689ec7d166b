"""A span replayed with the ids of a stored span but another session's key (found by the pipeline fuzz target in
CI): it is a duplicate, the stored span keeps its session, and the session the replay names, which has no span,
gets no record (the incremental path once tried to write a sessions row without activity and failed the batch)."""

from __future__ import annotations

from pathlib import Path

from galtea_otel.pipeline import Pipeline
from galtea_otel.store.sqlite import SQLiteStore
from galtea_otel.translate.row import KIND_LLM, SpanRow


def _row(custom_id: str, version: str, span_id: str = "cd" * 8) -> SpanRow:
    return SpanRow(trace_id="ab" * 16, span_id=span_id, parent_span_id=None, name="chat", kind=KIND_LLM,
                   start_ns=10**18, end_ns=10**18 + 10**9, status=0, own_custom_id=custom_id, own_version=version,
                   custom_id=custom_id, version=version, input="hi", output="hello", model="m1",
                   received_ns=10**18)


def test_a_replay_naming_another_session_is_a_duplicate_and_writes_no_empty_session(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    pipeline = Pipeline(store)
    assert pipeline.ingest_rows([_row("conv-a", "1")]).accepted == 1
    # the replay beside a new span, so that the batch is applied
    result = pipeline.ingest_rows([_row("conv-b", "2"), _row("conv-c", "1", span_id="ef" * 8)])
    assert (result.accepted, result.duplicates) == (1, 1)
    listed = {(s.custom_id, s.version) for s in store.list_sessions(limit=10)}
    assert listed == {("conv-a", "1"), ("conv-c", "1")}
    a = pipeline.session("conv-a", "1")
    assert a is not None and a.turn_count == 1
    store.close()
