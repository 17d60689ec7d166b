"""RELIABILITY 13: a script that records 1,000 spans in galtea-otel sessions, exporting OTLP/HTTP, and exits
normally: all 1,000 arrive. With the receiver down (nothing listening), it still exits: what the backend being
down adds to its run is at most the exit-time shutdown bound (``config.EXIT_TIMEOUT_S``, 4 s; RELIABILITY.md 13
asks for an exit within 6 s), measured against the same script with the receiver up, in the same test, so the
machine's speed and load (interpreter start, imports) do not decide it."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.store import open_store

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).parent / "apps" / "session_app.py"
SLACK_S = 1.5  # beyond the shutdown bound: the helper thread's margin and the receiver's own answers


def run_app(endpoint: str, spans: int, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(APP), endpoint, "spans", str(spans)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
    )
    return done, time.monotonic() - started


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    url = f"sqlite:///{tmp_path / 'receiver.db'}"
    store = open_store(url)
    options = ServeOptions(store_url=url, http=Address("127.0.0.1", 0), grpc=None, sweep_interval=3600.0)
    try:
        with start_in_thread(options, Pipeline(store)) as running:
            yield running
    finally:
        store.close()


def test_a_script_that_exits_normally_delivers_all_1000_spans(receiver: Receiver, tmp_path: Path) -> None:
    assert receiver.http_address is not None
    endpoint = f"http://127.0.0.1:{receiver.http_address.port}/v1/traces"
    done, _ = run_app(endpoint, 1000, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    with sqlite3.connect(tmp_path / "receiver.db") as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 1000
        assert conn.execute("SELECT count(*), min(turn_count), max(status) FROM sessions").fetchone() == (
            100, 8, "COMPLETED")


def test_with_the_receiver_down_the_script_still_exits_within_the_shutdown_bound(
    receiver: Receiver, tmp_path: Path
) -> None:
    from galtea_otel.config import EXIT_TIMEOUT_S

    assert receiver.http_address is not None
    up, elapsed_up = run_app(f"http://127.0.0.1:{receiver.http_address.port}/v1/traces", 1000, tmp_path)
    assert up.returncode == 0, up.stderr
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done, elapsed = run_app(f"http://127.0.0.1:{port}/v1/traces", 1000, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    extra = elapsed - elapsed_up
    assert extra <= EXIT_TIMEOUT_S + SLACK_S, (
        f"the backend being down added {extra:.1f} s to the script's run; its log:\n{done.stderr}")
