"""What a store holds, for tests to compare (records of every session), and a way to make it refuse rows."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from galtea_otel.pipeline import read_session
from galtea_otel.store import Store


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
