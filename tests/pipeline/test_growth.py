"""Issue 9: the cost of adding a turn does not grow with the session, counted in operations, not time.

SQLite's progress handler counts the virtual-machine instructions a connection runs: every row a statement reads
or writes costs instructions, so a batch that re-read the whole session (today's reassembly: 33 rows read for a
turn of a 10-turn session, 3,003 at 1,000 turns) would show it. Both shapes: a session of many traces (one per
request) and one huge trace (a session span around every turn).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.trace import Tracer

from galtea_otel import attributes as A
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import SpanData
from galtea_otel.store.sqlite import SQLiteStore

from .spans import collect, key, sdk_tracer

K = key("grow", "1")


def _turn(tracer: Tracer, i: int) -> None:
    with tracer.start_as_current_span("chat", attributes={
            **K, A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: f"question {i}", A.SPAN_OUTPUT: f"answer {i}"}):
        with tracer.start_as_current_span("search", attributes={**K, A.SPAN_TYPE: "RETRIEVER"}):
            pass
        with tracer.start_as_current_span("openai.chat", attributes={
                **K, "gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-test",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}):
            pass


def _traces(turns: int) -> list[list[SpanData]]:
    """Each turn its own trace: the spans of turn i."""
    out = []
    with sdk_tracer() as (tracer, exporter):
        for i in range(turns):
            _turn(tracer, i)
            out.append(collect(exporter))
            exporter.clear()
    return out


def _huge(turns: int) -> tuple[list[list[SpanData]], list[SpanData]]:
    """One trace: a session span around every turn. Returns the turns' spans and the session span."""
    out = []
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("galtea.session", attributes={**K, A.SPAN_TYPE: "SESSION"}):
            for i in range(turns):
                _turn(tracer, i)
                out.append(collect(exporter))
                exporter.clear()
        session = collect(exporter)
    return out, session


def _steps(store: SQLiteStore, action: Callable[[], object]) -> int:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn = store._connect()
    conn.set_progress_handler(tick, 10)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 10)
    return count[0]


def _cost_of_next_turn(tmp_path: Path, shape: str, size: int) -> tuple[int, int]:
    """(instructions to ingest turn ``size + 1`` of a session of ``size`` turns, to read that session)."""
    if shape == "traces":
        turns = _traces(size + 1)
    else:
        turns, _ = _huge(size + 1)
    store = SQLiteStore(f"sqlite:///{tmp_path / f'{shape}-{size}.db'}")
    pipeline = Pipeline(store, PipelineSettings())
    flat = [s for turn in turns[:-1] for s in turn]
    for start in range(0, len(flat), 600):  # any batching stores the same records (SESSION_MODEL 4)
        pipeline.ingest(flat[start:start + 600])
    ingest = _steps(store, lambda: pipeline.ingest(turns[-1]))
    detail = read_session(store, ("grow", "1"))
    assert detail is not None and detail.turn_count == size + 1
    read = _steps(store, lambda: read_session(store, ("grow", "1")))
    return ingest, read


@pytest.mark.parametrize("shape", ["traces", "huge"])
def test_a_turn_costs_the_same_in_a_10_and_a_1000_turn_session(tmp_path: Path, shape: str) -> None:
    small, small_read = _cost_of_next_turn(tmp_path, shape, 10)
    large, large_read = _cost_of_next_turn(tmp_path, shape, 1000)
    assert large <= 1.5 * small, (shape, small, large)
    # Reading returns every turn, so it grows with the session, but only linearly: per turn about the same.
    assert large_read / 1001 <= 1.5 * small_read / 11, (shape, small_read, large_read)


def test_a_late_session_span_of_a_huge_trace_keeps_the_records(tmp_path: Path) -> None:
    """The session span of the huge shape arrives last (it ends last): the records are those of the whole set."""
    turns, session = _huge(30)
    spans = [s for turn in turns for s in turn]
    one = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / 'one.db'}"))
    one.ingest([*spans, *session])
    many = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / 'many.db'}"))
    for turn in turns:
        many.ingest(turn)
    assert read_session(many.store, ("grow", "1")).status == "PENDING"  # type: ignore[union-attr]
    many.ingest(session)
    a, b = read_session(one.store, ("grow", "1")), read_session(many.store, ("grow", "1"))
    assert a is not None and b is not None and a.status == "COMPLETED" and a.turn_count == 30
    assert a.model_dump() == b.model_dump()


def _reads_for_one_turn_of_each(tmp_path: Path, sessions: int) -> tuple[int, int]:
    """(queries, every statement run, ``executemany`` rows included) to ingest one batch holding one new turn
    of each of ``sessions`` live sessions (each had 2 turns, the receiver's interleaved workload)."""
    batches: list[list[SpanData]] = [[], [], []]
    with sdk_tracer() as (tracer, exporter):
        for i in range(sessions):
            keyed = key(f"live-{i}", "1")
            for turn in range(3):
                with tracer.start_as_current_span("chat", attributes={
                        **keyed, A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: f"q{turn}", A.SPAN_OUTPUT: f"a{turn}"}), \
                        tracer.start_as_current_span("openai.chat", attributes={
                            **keyed, "gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-test"}):
                    pass
                batches[turn].extend(collect(exporter))
                exporter.clear()
    store = SQLiteStore(f"sqlite:///{tmp_path / f'live-{sessions}.db'}")
    pipeline = Pipeline(store, PipelineSettings())
    pipeline.ingest(batches[0])
    pipeline.ingest(batches[1])
    statements: list[str] = []
    conn = store._connect()
    conn.set_trace_callback(statements.append)
    try:
        pipeline.ingest(batches[2])
    finally:
        conn.set_trace_callback(None)
    detail = read_session(store, (f"live-{sessions - 1}", "1"))
    assert detail is not None and detail.turn_count == 3 and detail.inference_results[-1].output == "a2"
    queries = sum(1 for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH")))
    return queries, len(statements)


def test_a_batch_touching_many_sessions_reads_them_in_a_few_statements(tmp_path: Path) -> None:
    """Issue 9: a request carrying a turn of each of N live sessions reads the sessions' states, events and the
    traces' context in statements for the whole batch (chunked), not a few per session; what it writes is
    ``executemany`` rows, a constant number per span and per session."""
    few_queries, few_total = _reads_for_one_turn_of_each(tmp_path, 10)
    many_queries, many_total = _reads_for_one_turn_of_each(tmp_path, 200)
    assert many_queries <= few_queries + 6, (few_queries, many_queries)  # a chunk is 200 pairs
    # 2 spans inserted and re-rooted, 1 turn and 1 session row per session, and the batch's few statements
    assert many_total <= 6 * 200 + few_total, (few_total, many_total)
