"""The WAL checkpointed on a thread of its own (``SQLiteStore(checkpoint="background")``, what the receiver uses):
the writer's commits never checkpoint, the WAL stays bounded under a writer that never pauses, a reader holding
an old snapshot delays the WAL's restart without losing anything, and the thread ends with the store."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from galtea_otel.serve.options import ServeOptions
from galtea_otel.serve.server import _open_pipeline
from galtea_otel.store import StoreError, open_store
from galtea_otel.store.sqlite import SQLiteStore

RESTART = 1 << 20  # restart the WAL past 1 MiB here (64 MiB in use), so a test writes megabytes, not hundreds
TEXT = "x" * 60_000  # a transaction's worth of text (a test case's input)


def _write(store: SQLiteStore, first: int, count: int) -> None:
    for n in range(first, first + count):  # one transaction each, through the store's own write path
        with store.write_sql() as sql:
            sql.execute("INSERT INTO test_cases (id, input, metadata) VALUES (?, ?, '{}')", (f"tc-{n}", TEXT))


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _background(path: Path) -> SQLiteStore:
    store = SQLiteStore(f"sqlite:///{path}", checkpoint="background")
    assert store.checkpointer is not None
    store.checkpointer.restart_bytes = RESTART
    store.checkpointer.min_interval = 0.0
    return store


def _stored(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM test_cases").fetchone()[0])


def test_the_writer_never_checkpoints_and_the_wal_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "bg.db"
    store = _background(path)
    checkpointer = store.checkpointer
    assert checkpointer is not None
    try:
        assert store.read_sql("PRAGMA wal_autocheckpoint") == [(0,)]  # a commit never copies the WAL
        written = 0
        while checkpointer.stats["restarts"] < 2 and written < 3000:  # a writer that never pauses
            _write(store, written, 10)
            written += 10
        assert checkpointer.stats["restarts"] >= 2, checkpointer.stats
        before, restarts = _wal_bytes(path), checkpointer.stats["restarts"]
        _write(store, written, 400)  # 24 MB more, 24x the restart size
        # Restarted again and again: the file is reused from its start instead of growing with what is written.
        assert checkpointer.stats["restarts"] > restarts
        assert _wal_bytes(path) - before < 12_000_000, checkpointer.stats
        # (Not asserted: PASSIVE checkpoints between the restarts. On a loaded machine the thread may wake only
        # when the WAL is already past the restart size, so that every checkpoint it runs is followed by one.)
        assert checkpointer.stats["errors"] == 0
        assert _stored(path) == written + 400
    finally:
        store.close()
    assert _stored(path) == written + 400


def test_an_inline_store_leaves_checkpoints_to_its_commits(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'inline.db'}")
    try:
        assert isinstance(store, SQLiteStore) and store.checkpointer is None
        assert store.read_sql("PRAGMA wal_autocheckpoint") == [(2048,)]  # 16 MiB of 8 KiB pages
    finally:
        store.close()


def test_a_reader_on_an_old_snapshot_delays_the_restart_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "reader.db"
    store = _background(path)
    checkpointer = store.checkpointer
    assert checkpointer is not None
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        _write(store, 0, 5)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM test_cases").fetchone() == (5,)  # its snapshot: 5 rows
        _write(store, 5, 100)
        assert _until(lambda: checkpointer.stats["checkpoints"] >= 5)
        restarts = checkpointer.stats["restarts"]
        _write(store, 105, 5)
        time.sleep(0.2)
        # The reader still needs the WAL's frames after its snapshot: nothing can be restarted, the WAL grew.
        assert checkpointer.stats["restarts"] == restarts
        assert _wal_bytes(path) > 4 * RESTART
        assert reader.execute("SELECT count(*) FROM test_cases").fetchone() == (5,)  # its snapshot, unchanged
        reader.execute("COMMIT")
        _write(store, 110, 40)  # the reader let go: the next commits restart the WAL
        assert _until(lambda: checkpointer.stats["restarts"] > restarts)
        assert reader.execute("SELECT count(*) FROM test_cases").fetchone() == (150,)
        assert checkpointer.stats["errors"] == 0
    finally:
        reader.close()
        store.close()
    assert _stored(path) == 150


def test_close_ends_the_thread_and_a_reopened_store_checkpoints_again(tmp_path: Path) -> None:
    path = tmp_path / "close.db"
    store = _background(path)
    _write(store, 0, 3)
    assert _until(lambda: any(t.name == "galtea-otel-checkpoint" for t in threading.enumerate()))
    store.close()
    assert not any(t.name == "galtea-otel-checkpoint" and t.is_alive() for t in threading.enumerate())
    assert not Path(f"{path}-wal").exists() or _wal_bytes(path) == 0  # the last connection checkpointed it
    store = _background(path)
    try:
        _write(store, 3, 40)
        checkpointer = store.checkpointer
        assert checkpointer is not None
        assert _until(lambda: checkpointer.stats["restarts"] >= 1)
    finally:
        store.close()
    assert _stored(path) == 43


def test_the_url_names_the_mode_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'url.db'}?checkpoint=background")
    try:
        assert isinstance(store, SQLiteStore) and store.checkpointer is not None
    finally:
        store.close()
    store = open_store(f"sqlite:///{tmp_path / 'url.db'}?checkpoint=inline", checkpoint="background")
    try:  # the URL wins over the caller's default
        assert isinstance(store, SQLiteStore) and store.checkpointer is None
    finally:
        store.close()
    with pytest.raises(StoreError, match="unknown checkpoint mode 'sometimes': use inline or background"):
        open_store(f"sqlite:///{tmp_path / 'url.db'}?checkpoint=sometimes")


def test_the_receiver_checkpoints_in_the_background(tmp_path: Path) -> None:
    options = ServeOptions(store_url=f"sqlite:///{tmp_path / 'serve.db'}")
    _pipeline, store = _open_pipeline(options)
    try:
        assert isinstance(store, SQLiteStore) and store.checkpointer is not None
    finally:
        store.close()
