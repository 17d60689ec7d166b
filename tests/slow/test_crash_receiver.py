"""RELIABILITY 1: kill -9 of the receiver while 10,000 spans (100 sessions x 100) are in flight from a retrying
OTLP/HTTP client (twice); restarted on the same port and store, nothing acknowledged is lost and nothing is
doubled."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from galtea_otel.store import open_store
from tests.slow.conftest import APPS, ROOT, Serve, child_env, free_port, sqlite_integrity

SESSIONS, PER_SESSION = 100, 100
TOTAL = SESSIONS * PER_SESSION
KILL_AT = (3000, 6500)  # acknowledged spans before each kill -9


def keys(path: Path) -> list[str]:
    """The complete lines of a file the client appends to (a half-written last line is not counted)."""
    if not path.exists():
        return []
    text = path.read_text()
    return text[: text.rfind("\n") + 1].splitlines()


def test_kill_9_of_the_receiver_mid_stream_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "receiver.db"
    store_url = f"sqlite:///{db}"
    port = free_port()
    receiver = Serve(store_url, port).start()
    client_log = (tmp_path / "client.log").open("w")  # a file, not a pipe nobody reads while it runs
    client = subprocess.Popen(
        [sys.executable, str(APPS / "otlp_client.py"), receiver.url, str(tmp_path), str(SESSIONS),
         str(PER_SESSION), "100", "2"],
        stdout=subprocess.PIPE, stderr=client_log, text=True, env=child_env(), cwd=ROOT,
    )
    acked_before_kill: set[str] = set()
    try:
        for threshold in KILL_AT:  # twice, at different points of the stream
            deadline = time.monotonic() + 120
            while len(keys(tmp_path / "acked")) < threshold and client.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            receiver.kill9()  # mid-stream: requests are in flight, one may be committing
            acked = set(keys(tmp_path / "acked"))
            assert threshold <= len(acked) < TOTAL, "the kill did not happen mid-stream"
            acked_before_kill |= acked
            assert sqlite_integrity(db) == "ok"  # a plain sqlite3 open recovers the WAL: no repair needed
            time.sleep(1.0)  # the client meets a dead port for a while
            receiver = Serve(store_url, port).start()  # same port, same store, opened without any repair
        out, _ = client.communicate(timeout=180)
        err = (tmp_path / "client.log").read_text()
        assert client.returncode == 0, err
        counts = json.loads(out.strip().splitlines()[-1])
        # The client met the crashes: its exporter retried (connection refused, reset), or gave up and the
        # batch was sent again.
        assert counts["failed_attempts"] >= 1 or "Transient error" in err, err
        assert receiver.stop() == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        client_log.close()
        receiver.kill9()

    manifest = keys(tmp_path / "manifest")
    acked = set(keys(tmp_path / "acked"))
    assert len(manifest) == len(set(manifest)) == TOTAL
    assert acked == set(manifest)  # the client ends only when every batch was acknowledged
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT trace_id, span_id FROM spans").fetchall()
    stored = [f"{trace_id}:{span_id}" for trace_id, span_id in rows]
    assert len(stored) == len(set(stored)) == TOTAL  # every span stored exactly once
    assert set(stored) == set(manifest)
    assert acked_before_kill <= set(stored)  # what was acknowledged before the crash survived it
    store = open_store(store_url)
    try:
        sessions = store.list_sessions(limit=1000)
    finally:
        store.close()
    assert len(sessions) == SESSIONS
    assert {(s.status, s.turn_count) for s in sessions} == {("COMPLETED", PER_SESSION - 2)}
