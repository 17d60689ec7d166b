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


def _pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def test_a_new_store_has_8_kib_pages_and_an_older_file_keeps_its_own(tmp_path: Path) -> None:
    """New stores get 8 KiB pages (a turn's row no longer takes a 4 KiB page of its own); a store written with
    SQLite's default 4 KiB pages keeps them, and both checkpoint their WAL every 16 MiB."""
    from galtea_otel.store.sqlite import WAL_CHECKPOINT_BYTES

    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "c", "1", 2)
        spans = collect(exporter)
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    store = SQLiteStore(f"sqlite:///{new}")
    Pipeline(store).ingest(spans)
    with store.transaction() as tx:
        checkpoint = tx._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]  # type: ignore[attr-defined]
    store.close()
    assert _pragma(new, "page_size") == 8192 and checkpoint * 8192 == WAL_CHECKPOINT_BYTES

    conn = sqlite3.connect(old)  # a file of 4 KiB pages, as every earlier release wrote its store
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("DROP TABLE t")
    conn.close()
    assert _pragma(old, "page_size") == 4096
    store = SQLiteStore(f"sqlite:///{old}")
    Pipeline(store).ingest(spans)
    with store.transaction() as tx:
        checkpoint = tx._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]  # type: ignore[attr-defined]
    reference = SQLiteStore(f"sqlite:///{new}")
    try:
        assert _pragma(old, "page_size") == 4096 and checkpoint * 4096 == WAL_CHECKPOINT_BYTES
        assert [s.model_dump() for s in store.list_sessions()] == [s.model_dump() for s in reference.list_sessions()]
    finally:
        store.close()
        reference.close()
