"""WAL checkpoints on a thread of their own, beside a busy SQLite writer (``SQLiteStore(checkpoint="background")``).

SQLite's automatic checkpoint runs inside the COMMIT that crosses ``wal_autocheckpoint``: that commit copies the
WAL's pages into the database file and waits for two fsyncs, while the writer holds the store's write lock.
Measured on the receiver's interleaved workload (``benchmarks/bench_receiver.py``), those checkpoints were about
a fifth of the receiver's time (BENCHMARKS.md, stop 20). Here the writer's connections never checkpoint; this
thread, with a connection of its own, runs

- a **PASSIVE** checkpoint after commits (it copies what no reader still needs, beside the writer: SQLite takes
  no write lock for it, and Python's sqlite3 releases the interpreter lock while it runs); and
- once the WAL holds more than ``restart_bytes`` and every frame is copied, a **RESTART** checkpoint while it
  holds the store's write lock, so that no writer of this process waits on SQLite's busy handler meanwhile; with
  the frames already copied, it has little left to copy: the next transaction writes the WAL from its start again.
  Without it, a writer that is never idle keeps appending and the WAL grows without bound (tried in stop 17: 327
  MB). A ``threading.Lock`` is not fair (a writer in a loop takes it again before a waiting thread wakes), so the
  store's writers call :meth:`Checkpointer.wait_turn` before they take the lock: while this thread wants it, they
  let it have it first. A reader that keeps an old snapshot open makes the RESTART give up after ``busy_ms``
  (the reader still needs the WAL); until that reader lets go, the PASSIVE checkpoints cannot copy everything,
  so no RESTART is tried again, as SQLite's own checkpoint would behave.

If the thread stops for any reason (a failure is logged), the next commit starts another; a store that does not
ask for it checkpoints as SQLite does by default.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("galtea_otel")

RESTART_BYTES = 64 << 20  # the WAL is restarted from its start past this much
# At most one checkpoint a second: each copies the pages committed since the last and waits for two fsyncs, and a
# page rewritten by every commit (a session's row, an index's) is copied once per checkpoint, so checkpointing
# more often costs CPU for nothing. Measured on the receiver's workload (144,000 spans, stop 20): the thread's CPU
# 2.3 s at 0.05 s, 2.0 s at 0.25 s, 1.5 s at 1 s, against about 1.8 s in the commits of an inline store.
MIN_INTERVAL = 1.0


class Checkpointer:
    """The checkpoint thread of one store (see the module's docstring): its writers call ``wait_turn()`` before
    they take the write lock and ``poke()`` after every commit."""

    def __init__(self, path: Path, write_lock: threading.Lock, *, restart_bytes: int = RESTART_BYTES,
                 busy_ms: int = 100, min_interval: float = MIN_INTERVAL) -> None:
        self._path = path
        self._write_lock = write_lock
        self.restart_bytes = restart_bytes  # both may be changed while it runs
        self._busy_ms = busy_ms
        self.min_interval = min_interval
        self._stopped = threading.Event()
        self.wants_lock = False  # this thread waits for the write lock (wait_turn)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # Checkpoints run, WAL restarts, RESTARTs that gave up (a reader held an old snapshot), failures, and the
        # most frames the WAL held when a checkpoint looked (its size in pages).
        self.stats = {"checkpoints": 0, "restarts": 0, "restarts_busy": 0, "errors": 0, "largest_wal_frames": 0}

    def poke(self) -> None:
        """A transaction committed: checkpoint soon (starts the thread, or a new one if it stopped)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            with self._start_lock:
                if self._stopping:
                    return
                if self._thread is None or not self._thread.is_alive():
                    try:
                        self._thread = threading.Thread(target=self._run, name="galtea-otel-checkpoint",
                                                        daemon=True)
                        self._thread.start()
                    except RuntimeError:  # interpreter shutdown: SQLite checkpoints when the store closes
                        self._thread = None
                        return
        self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (the store checkpoints what is left when its last connection closes)."""
        with self._start_lock:
            self._stopping = True
            thread = self._thread
        self._stopped.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        with self._start_lock:  # a store used again after close() checkpoints again
            self._stopping = False
            self._stopped.clear()
            self._thread = None if thread is None or not thread.is_alive() else thread

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
        except sqlite3.Error:
            self.stats["errors"] += 1
            log.exception("galtea-otel: the checkpoint thread cannot open %s; retrying after the next commit",
                          self._path)
            return
        try:
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                started = time.monotonic()
                self._checkpoint(conn, page)
                # Commits that come sooner wait for the next one (MIN_INTERVAL).
                self._stopped.wait(self.min_interval - (time.monotonic() - started))
        except sqlite3.Error:
            self.stats["errors"] += 1
            log.exception("galtea-otel: a WAL checkpoint of %s failed; retrying after the next commit", self._path)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, page: int) -> None:
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.stats["checkpoints"] += 1
        self.stats["largest_wal_frames"] = max(self.stats["largest_wal_frames"], int(frames))
        if busy or frames < 0 or frames * page < self.restart_bytes or copied < frames:
            return  # another checkpoint ran, the WAL is small, or a reader still needs frames: after the next commit
        self.wants_lock = True
        try:
            with self._write_lock:
                self.wants_lock = False
                busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
        finally:
            self.wants_lock = False
        self.stats["restarts_busy" if busy else "restarts"] += 1

    def wait_turn(self, timeout: float = 1.0) -> None:
        """A writer, before it takes the write lock: while this thread waits for it, let it go first (about one
        commit's worth of pages to copy), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.wants_lock and time.monotonic() < deadline:
            time.sleep(0.0005)
