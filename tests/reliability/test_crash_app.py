"""Issue 4 point 2: an application killed with SIGKILL in the middle of a session, exporting in process to
SQLite. The store opens cleanly afterwards, the session is PENDING with the turns flushed before the kill, and
the idle sweep later closes it as COMPLETED."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.store import open_store

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).parent / "apps" / "session_app.py"


def test_an_app_killed_mid_session_leaves_a_pending_session_that_the_sweep_closes(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    store_url = f"sqlite:///{db}"
    app = subprocess.Popen(
        [sys.executable, str(APP), store_url, "hang"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        assert line.strip() == "ready", app.stderr.read() if app.stderr else ""
        app.send_signal(signal.SIGKILL)
        assert app.wait(30) == -signal.SIGKILL
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()

    with sqlite3.connect(db) as conn:  # the WAL the killed process left is recovered on open: no repair
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = open_store(store_url)
    try:
        pipeline = Pipeline(store)
        (summary,) = store.list_sessions()
        assert (summary.custom_id, summary.status, summary.turn_count) == ("killed", "PENDING", 2)
        detail = read_session(store, ("killed", "1"))
        assert detail is not None
        assert [(t.input, t.output) for t in detail.inference_results] == [("first", "tsrif"), ("second", "dnoces")]

        assert pipeline.sweep(now_ns=time.time_ns() + 29 * 60 * 10**9)["idle_closed"] == 0  # not idle yet
        assert store.list_sessions()[0].status == "PENDING"
        counts = pipeline.sweep(now_ns=time.time_ns() + 31 * 60 * 10**9)
        assert counts["idle_closed"] == 1
        (closed,) = store.list_sessions()
        assert (closed.status, closed.turn_count, closed.error) == ("COMPLETED", 2, None)
    finally:
        store.close()
