"""SQLite specifics: WAL readers are not blocked by a writer; the schema is versioned; bad files are refused.
(Migrations from earlier schemas run against both stores: ``tests/store/test_migrations.py``.)"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.store import StoreError, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from galtea_otel.store.sqlite import SQLiteStore

from .spans import collect, conversation, sdk_tracer


def test_a_reader_is_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "c", "1", 2)
        spans = collect(exporter)
    writer = Pipeline(SQLiteStore(url))
    writer.ingest(spans[:3])
    reader = SQLiteStore(url)
    inside = threading.Event()
    release = threading.Event()
    seen: list[object] = []

    def hold_write() -> None:
        with writer.store.transaction() as tx:
            tx.add_counter("held", 1)
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold_write)
    thread.start()
    try:
        assert inside.wait(10)
        # The writer holds the write lock; a reader in another connection still reads the committed state.
        seen.extend(s.status for s in reader.list_sessions())
        seen.append(reader.counters())
    finally:
        release.set()
        thread.join()
    assert seen == ["PENDING", {}]
    assert reader.counters() == {"held": 1}


def test_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteStore(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone() == (
        str(SCHEMA_VERSION),)
    conn.execute("UPDATE galtea_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(f"sqlite:///{path}")


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="something else"):
        open_store(str(path))
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["customers"]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path / 'nope' / 's.db'}")
