"""Issue 12 point 4: exact loss accounting in the application. For each fault, every span the application
produced is either in the store or counted in ``galtea_otel.stats()`` (exactly once):

    produced = stored + spans_dropped + spans_lost + spans_rejected + spans_unconfirmed

with the real export queue, the real session exporter and a real SQLite store made to fail or to be slow for
real: a trigger that aborts inserts (a store failing mid-run), another connection holding the write lock (a slow
store), a trigger that aborts only what the idle sweep writes (a sweep failing after the batch was committed)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import galtea_otel
from galtea_otel.export import exporter as exporter_module
from galtea_otel.settings import PipelineSettings
from tests.reliability.apps.instrumented import App, instrumented

LOSS_COUNTERS = ("spans_dropped", "spans_lost", "spans_rejected", "spans_unconfirmed")


@galtea_otel.inference(name="chat", model="fake-1")
def chat(prompt: str) -> str:
    return prompt[::-1]


def converse(prefix: str, sessions: int, turns: int) -> None:
    for s in range(sessions):
        with galtea_otel.session(custom_id=f"{prefix}-{s}", version="1"):
            for t in range(turns):
                chat(f"{prefix} {s} {t}")


def produced(app: App) -> int:
    return sum(app.ends.ends.values())


def stored(app: App) -> int:
    return int(app.query("SELECT count(*) FROM spans WHERE session_event IS NOT 'idle'")[0][0])


def counted() -> dict[str, int]:
    counters = galtea_otel.stats()
    return {name: counters.get(name, 0) for name in LOSS_COUNTERS}


def assert_balanced(app: App) -> dict[str, int]:
    losses = counted()
    assert produced(app) == stored(app) + sum(losses.values()), (produced(app), stored(app), losses)
    assert galtea_otel.stats().get("spans_exported", 0) == stored(app)
    return losses


def execute(db: Path, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(sql)


@contextlib.contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Another process-like connection holds the database's write lock: every write of the store waits (its
    busy timeout is 30 s) until the block ends. A slow store, for real."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def wait_for(condition: object, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_store_failing_mid_run_loses_only_what_it_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "app.db"
    with instrumented(db) as app:
        converse("before", 2, 3)
        app.flush()
        before = produced(app)
        execute(db, "CREATE TRIGGER disk_on_fire BEFORE INSERT ON spans BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        converse("during", 2, 3)
        assert galtea_otel.flush(timeout_s=30) is False  # said, not raised
        during = produced(app) - before
        execute(db, "DROP TRIGGER disk_on_fire")
        converse("after", 2, 3)
        app.flush()
        losses = assert_balanced(app)
    assert losses == {"spans_dropped": 0, "spans_lost": during, "spans_rejected": 0, "spans_unconfirmed": 0}
    assert galtea_otel.stats()["export_failures"] >= 1
    assert app.sessions() == [(f"{phase}-{s}", "COMPLETED", 3) for phase in ("after", "before") for s in range(2)]
    assert any(f"could not store {during} spans" in r.getMessage() and "disk on fire" in r.getMessage()
               for r in caplog.records)


def test_a_queue_overflow_behind_a_slow_store_is_counted_exactly(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with instrumented(db, max_queue_size=8, schedule_delay_millis=20) as app:
        converse("warm", 1, 1)  # creates the schema
        app.flush()
        with write_locked(db):
            converse("burst", 4, 10)  # the exporter waits on the lock: the 8-span queue fills, the rest is dropped
        app.flush()
        losses = assert_balanced(app)
    assert losses["spans_dropped"] > 0 and losses["spans_lost"] == losses["spans_unconfirmed"] == 0
    assert galtea_otel.stats()["spans_dropped.queue_full"] == losses["spans_dropped"]


def test_the_batch_cut_off_by_the_shutdown_timeout_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch inside the exporter when shutdown's time is up is ``spans_unconfirmed`` (logged); once that
    export completes, the count moves to what the exporter says (here: stored)."""
    caplog.set_level(logging.WARNING, logger="galtea_otel")
    db = tmp_path / "app.db"
    # batches go out only when flush() asks: the batch taken below is exactly what was queued then
    with instrumented(db, schedule_delay_millis=600_000) as app:
        converse("warm", 1, 1)
        app.flush()
        with write_locked(db):
            converse("cut", 2, 5)
            assert galtea_otel.flush(timeout_s=0.3) is False  # the batch is in the exporter, waiting on the lock
            in_flight = produced(app) - stored(app)
            converse("queued", 2, 2)  # these wait in the queue behind it
            assert galtea_otel.shutdown(timeout_s=0.3) is False
            losses = assert_balanced(app)
            assert losses["spans_unconfirmed"] == in_flight > 0
            assert galtea_otel.stats()["spans_dropped.shutdown"] == losses["spans_dropped"] == \
                produced(app) - stored(app) - in_flight
            assert any(f"{in_flight} spans were still being exported" in r.getMessage() for r in caplog.records)
        # the lock is released: the cut-off export completes and is stored
        wait_for(lambda: galtea_otel.stats()["spans_unconfirmed"] == 0, "the cut-off export to complete")
        losses = assert_balanced(app)
    assert losses["spans_unconfirmed"] == 0 and losses["spans_lost"] == 0
    assert ("cut-0", "COMPLETED", 5) in app.sessions()


def test_a_sweep_failing_after_the_commit_is_not_a_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle sweep runs after each committed batch (every time, here); it fails for real (a trigger aborts
    the idle markers it writes). The spans are stored: flush() says True, nothing is counted lost, the sweep's
    failure is counted and logged as what it is."""
    monkeypatch.setattr(exporter_module, "SWEEP_EVERY_S", 0.0)
    db = tmp_path / "app.db"
    with instrumented(db, settings=PipelineSettings(idle_close_minutes=0.0)) as app:
        converse("warm", 1, 1)
        app.flush()
        execute(db, "CREATE TRIGGER no_idle BEFORE INSERT ON spans WHEN NEW.session_event = 'idle' "
                    "BEGIN SELECT RAISE(ABORT, 'the sweep cannot write'); END")
        with galtea_otel.session(custom_id="open", version="1"):
            chat("still talking")
            assert galtea_otel.flush(timeout_s=30) is True  # stored; the sweep then found it idle and failed
            assert galtea_otel.stats()["sweep_failures"] >= 1
            assert_balanced(app)
        app.flush()
        losses = assert_balanced(app)
    assert losses == {"spans_dropped": 0, "spans_lost": 0, "spans_rejected": 0, "spans_unconfirmed": 0}
    assert galtea_otel.stats().get("export_failures", 0) == 0
    assert any("idle sweep failed" in r.getMessage() and "the sweep cannot write" in r.getMessage()
               for r in caplog.records)
    assert not any("could not store" in r.getMessage() for r in caplog.records)


def test_an_application_exiting_behind_a_slow_store_counts_every_span(tmp_path: Path) -> None:
    """The issue's case: the process exits while a batch is inside a slow store (the shutdown timeout expires).
    After the exit, spans ended = rows in the store + counted (the cut-off batch is ``spans_unconfirmed``)."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    db = tmp_path / "app.db"
    app = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "apps" / "exit_app.py"), f"sqlite:///{db}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(root)}, cwd=tmp_path)
    try:
        assert app.stdout is not None and app.stdin is not None
        assert app.stdout.readline().strip() == "warm", app.stderr.read() if app.stderr else ""
        with write_locked(db):
            app.stdin.write("go\n")
            app.stdin.flush()
            out, err = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    counters = report["stats"]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT count(*) FROM spans WHERE session_event IS NOT 'idle'").fetchone()[0]
    counted = sum(counters.get(name, 0) for name in LOSS_COUNTERS)
    assert report["ended"] == rows + counted, (report, rows)
    assert counters["spans_unconfirmed"] > 0 and counters["spans_exported"] == rows
    assert "spans were still being exported when the shutdown timeout" in err
