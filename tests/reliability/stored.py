"""What a store holds, for tests to compare (records of every session), and a way to make it refuse rows."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.store import Store, open_store


def store_records(store: Store) -> dict[str, Any]:
    """Every session's summary and full record (turns, spans, aggregates), as JSON values, by custom id."""
    out: dict[str, Any] = {}
    for summary in store.list_sessions(limit=100_000):
        detail = read_session(store, (summary.custom_id, summary.version))
        assert detail is not None
        out[summary.custom_id] = (summary.model_dump(mode="json"), detail.model_dump(mode="json"))
    return out


def refuse_inserts(db: Path, name: str, table: str, when: str, message: str) -> None:
    """A trigger ``name`` on the SQLite file ``db`` that aborts every INSERT into ``table`` matching ``when``
    (an expression over ``NEW``) with ``message``: the store refusing those rows, for real."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {when} "
                     f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
        conn.commit()


def drop_trigger(db: Path, name: str) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"DROP TRIGGER {name}")
        conn.commit()


def store_quiet_session(url: str, prefix: str = "quiet", quiet_s: float = 3600.0) -> None:
    """Store one session (``<prefix>-00``: a keyed request span around an LLM call) whose spans ended ``quiet_s``
    seconds ago, with no end event, as the receiver would (through OTLP protobuf): past its idle close (30
    minutes), so that a deferred receiver started on this store has a sweep due at once and starts its assembler
    then, not with the first request."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from galtea_otel import attributes as A
    from galtea_otel.decode.otlp_proto import decode_proto

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.reliability")
    ended = time.time_ns() - int(quiet_s * 1e9)
    root = tracer.start_span("request", start_time=ended - 3_000_000, attributes={
        A.SESSION_CUSTOM_ID: f"{prefix}-00", A.SESSION_VERSION: "1", A.SPAN_TYPE: "SPAN"})
    with trace.use_span(root, end_on_exit=False):
        chat = tracer.start_span("chat", kind=trace.SpanKind.CLIENT, start_time=ended - 2_000_000, attributes={
            A.SPAN_TYPE: A.TYPE_GENERATION, A.GEN_AI_REQUEST_MODEL: "gpt-4o", A.SPAN_INPUT: "hello",
            A.SPAN_OUTPUT: "hi"})
        chat.end(end_time=ended - 1_000_000)
    root.end(end_time=ended)
    provider.shutdown()
    store = open_store(url)
    try:
        pipeline = Pipeline(store)
        body = encode_spans(memory.get_finished_spans()).SerializeToString()
        pipeline.ingest_rows(pipeline.translate_spans(decode_proto(body).spans))
    finally:
        store.close()
