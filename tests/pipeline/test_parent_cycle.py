"""Spans of one batch whose parents form a cycle (bad input; found by the pipeline fuzz target in CI): the batch is
stored, not failed by a RecursionError, and the records are the same whatever order the spans come in."""

from __future__ import annotations

import itertools
from pathlib import Path

from galtea_otel.pipeline import Pipeline
from galtea_otel.store.sqlite import SQLiteStore
from galtea_otel.translate.row import KIND_LLM, SpanRow


def _row(span_id: str, parent: str) -> SpanRow:
    return SpanRow(trace_id="ab" * 16, span_id=span_id, parent_span_id=parent, name="chat", kind=KIND_LLM,
                   start_ns=10**18, end_ns=10**18 + 10**9, status=0, own_custom_id="conv-a", own_version="1",
                   custom_id="conv-a", version="1", input="hi", output="hello", model="m1", received_ns=10**18)


def test_a_parent_cycle_in_a_batch_is_stored_the_same_in_any_order(tmp_path: Path) -> None:
    ids = ["a1" * 8, "b2" * 8, "c3" * 8]
    cycle = [_row(ids[i], ids[(i + 1) % 3]) for i in range(3)]
    seen = []
    for n, order in enumerate(itertools.permutations(cycle)):
        store = SQLiteStore(str(tmp_path / f"s{n}.db"))
        pipeline = Pipeline(store)
        assert pipeline.ingest_rows(list(order)).accepted == 3
        found = pipeline.session("conv-a", "1")
        assert found is not None
        seen.append(found.model_dump(mode="json", exclude={"created_at", "updated_at"}))
        store.close()
    assert all(s == seen[0] for s in seen[1:])
