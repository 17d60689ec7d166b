"""What a store holds, for tests to compare (records of every session), and a way to make it refuse rows."""

from __future__ import annotations

import contextlib
import sqlite3
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


def store_open_session(url: str, prefix: str = "open") -> None:
    """Store one session with no end yet (``<prefix>-00``, 50 spans) as the receiver would (through OTLP
    protobuf): a deferred receiver started on this store has something to sweep, so it starts its assembler at
    once (else with the first request) and logs its process id."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from galtea_otel.decode.otlp_proto import decode_proto
    from tests.reliability.test_crash_resend import sessions

    store = open_store(url)
    try:
        pipeline = Pipeline(store)
        body = encode_spans(sessions(1, prefix)).SerializeToString()
        pipeline.ingest_rows(pipeline.translate_spans(decode_proto(body).spans))
    finally:
        store.close()
