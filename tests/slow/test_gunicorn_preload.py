"""RELIABILITY 14: gunicorn ``--preload`` with 4 workers, galtea-otel configured at import (in the master,
before the fork), 500 spans recorded in each worker, then a graceful stop: all 2,000 spans are received.

A worker only exports if galtea-otel's export thread is re-created in it after the fork; the spans a worker
still holds when it stops leave with the exit flush."""

from __future__ import annotations

import http.client
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.store import open_store
from tests.needs import need_module
from tests.slow.conftest import APPS, ROOT, child_env, free_port

WORKERS, PER_WORKER = 4, 500
GUNICORN = Path(sys.executable).parent / "gunicorn"


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


def get(port: int) -> tuple[int, int, int]:
    """(status, worker pid, spans that worker recorded)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        pid, recorded = response.read().decode().split()
        return response.status, int(pid), int(recorded)
    finally:
        conn.close()


def wait_listening(port: int, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("gunicorn did not start")


def test_gunicorn_preload_workers_each_export_their_spans(receiver: Receiver, tmp_path: Path) -> None:
    need_module("gunicorn")
    assert receiver.http_address is not None
    port = free_port()
    gunicorn = subprocess.Popen(
        [str(GUNICORN), "--preload", "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
         "--chdir", str(APPS), "--graceful-timeout", "30", "wsgi_app:app"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=child_env(GALTEA_TEST_ENDPOINT=f"http://127.0.0.1:{receiver.http_address.port}/v1/traces",
                      GALTEA_TEST_SPANS_PER_WORKER=str(PER_WORKER)),
    )
    try:
        wait_listening(port, gunicorn)
        full: set[int] = set()
        served: Counter[int] = Counter()
        lock = threading.Lock()
        deadline = time.monotonic() + 90

        def client() -> None:
            while time.monotonic() < deadline:
                with lock:
                    if len(full) == WORKERS:
                        return
                status, pid, recorded = get(port)
                with lock:
                    if status == 200:
                        served[pid] += 1
                    if recorded == PER_WORKER:
                        full.add(pid)

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        assert len(full) == WORKERS, f"not every worker got its {PER_WORKER} spans: {served}"
        gunicorn.send_signal(signal.SIGTERM)  # graceful: each worker finishes, then exits (and flushes)
        log, _ = gunicorn.communicate(timeout=60)
        assert gunicorn.returncode == 0, log
    finally:
        if gunicorn.poll() is None:
            gunicorn.kill()
            gunicorn.communicate()

    store = receiver.pipeline.store  # type: ignore[union-attr]
    sessions = store.list_sessions(limit=10_000)
    per_pid = Counter(s.custom_id.split("-")[0] for s in sessions)
    assert per_pid == Counter({f"pid{pid}": PER_WORKER // 10 for pid in full})
    assert {(s.status, s.turn_count) for s in sessions} == {("COMPLETED", 8)}
    with sqlite3.connect(tmp_path / "receiver.db") as conn:
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == WORKERS * PER_WORKER
    assert "galtea-otel" not in log, log  # no drop report, no internal error, no timeout
