"""The slow reliability tests (RELIABILITY.md 1 and 14): real processes, killed or forked.

Every test under ``tests/slow`` is marked ``slow``; they run with the rest by default (about a minute and a
half in all on 2 cores). ``pytest -m "not slow"`` leaves them out, ``pytest tests/slow`` runs only them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "reliability" / "apps"
_READY = re.compile(r"receiver ready: OTLP/HTTP on http://127\.0\.0\.1:(\d+)/v1/traces")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a slow reliability test (tests/slow); deselect with -m 'not slow'")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


class Serve:
    """``galtea-otel serve`` as a child process on a fixed loopback port (so that it can be restarted on it)."""

    def __init__(self, store_url: str, port: int, *args: str) -> None:
        self.command = [
            sys.executable, "-c", "from galtea_otel.cli.main import main; main()", "serve",
            "--store", store_url, "--http", f"127.0.0.1:{port}", "--grpc", "off", *args,
        ]
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.log_lines: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def start(self, timeout: float = 60.0) -> Serve:
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=child_env(), cwd=ROOT,
        )
        ready = threading.Event()

        def read(process: subprocess.Popen[str]) -> None:
            assert process.stderr is not None
            for line in process.stderr:
                self.log_lines.append(line)
                match = _READY.search(line)
                if match and int(match.group(1)) == self.port:
                    ready.set()

        threading.Thread(target=read, args=(self.process,), name="serve-log", daemon=True).start()
        if not ready.wait(timeout):
            self.kill9()
            raise AssertionError(f"the receiver did not start on port {self.port}; its log:\n{self.log}")
        return self

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> int:
        """SIGTERM, and the exit code of a graceful stop."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def sqlite_integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
