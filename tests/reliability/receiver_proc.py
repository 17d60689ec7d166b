"""``galtea-otel serve`` as a real child process, for the tests that need a process of their own: two
receivers on one database, and memory measured in the receiver alone (``/proc/PID/status``)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
_READY = re.compile(r"receiver ready: OTLP/HTTP on http://[^/\s]+:(\d+)/v1/traces, OTLP/gRPC on (?:off|\S+:(\d+))")


class ServeProcess:
    """``with ServeProcess(store_url, "--max-inflight", "2") as proc:`` a receiver on a free loopback port.

    Its stderr (the log) is read all along by a thread, into :attr:`log_lines`; :attr:`url` is the OTLP/HTTP
    endpoint. Leaving the block sends SIGTERM and expects a clean exit (code 0) within 60 s.
    """

    def __init__(
        self,
        store_url: str,
        *args: str,
        grpc: bool = False,
        http: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = [
            sys.executable,
            "-c",
            "from galtea_otel.cli.main import main; main()",
            "serve",
            "--store",
            store_url,
            "--http",
            http,
            "--grpc",
            "127.0.0.1:0" if grpc else "off",
            *args,
        ]
        self.store_url = store_url
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log_lines: list[str] = []
        self.port = 0
        self.grpc_port = 0
        self.ready_line = ""
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def start(self, timeout: float = 60.0) -> ServeProcess:
        self.process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=self.env, cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, name="serve-log", daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or not self.port:
            self.kill()
            raise AssertionError(f"the receiver did not start; its log:\n{self.log}")
        return self

    def wait_assembled(self, timeout: float = 60.0) -> None:
        """Until nothing acknowledged waits in the store's inbox (``galtea-otel serve`` on a SQLite file defers
        assembly by default: a request is answered once in the inbox, its records come a moment later). A
        receiver without an inbox (inline, PostgreSQL) has nothing to wait for."""
        inbox = _inbox_of(self.store_url)
        if inbox is None or not inbox.exists():
            return
        deadline = time.monotonic() + timeout
        with contextlib.closing(sqlite3.connect(inbox, timeout=30)) as conn:
            while conn.execute("SELECT count(*) FROM inbox WHERE failed IS NULL").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the inbox was not assembled within {timeout} s; the log:\n{self.log}")
                time.sleep(0.02)

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line)
            match = _READY.search(line)
            if match:
                self.port = int(match.group(1))
                self.grpc_port = int(match.group(2) or 0)
                self.ready_line = line
                self._ready.set()
        self._ready.set()  # the process ended

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (the receiver drains in-flight requests and closes the store)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        finally:
            self.kill()
        if self._reader is not None:
            self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def status_kib(self, field: str) -> int:
        """A ``/proc/PID/status`` memory figure in KiB: ``VmRSS`` (resident now), ``VmHWM`` (peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def settled_rss_kib(self, *, within_kib: int = 1024, every_s: float = 0.5, most_s: float = 20.0) -> int:
        """``VmRSS`` once it stops growing (two readings ``every_s`` apart within ``within_kib``): a baseline
        taken after what a receiver loads once in the background (the price table, preloaded when the pipeline
        is made), so that it is not counted as memory the test's load used."""
        previous = self.status_kib("VmRSS")
        deadline = time.monotonic() + most_s
        while time.monotonic() < deadline:
            time.sleep(every_s)
            now = self.status_kib("VmRSS")
            if abs(now - previous) <= within_kib:
                return now
            previous = now
        return previous

    def reset_peak(self) -> None:
        """Make ``VmHWM`` restart from the current RSS (``clear_refs`` 5, Linux >= 4.0)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        code = self.stop()
        if kind is None:
            assert code == 0, f"the receiver exited with {code}; its log:\n{self.log}"


def command_exit(args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``galtea-otel ARGS`` to its end (for commands expected to refuse to start)."""
    return subprocess.run(
        [sys.executable, "-c", "from galtea_otel.cli.main import main; main()", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )


def _inbox_of(store_url: str) -> Path | None:
    """The inbox file beside a SQLite store (``sqlite:///path[?...]`` or a plain path); None for PostgreSQL."""
    if store_url.startswith(("postgresql:", "postgres:")):
        return None
    path = store_url.removeprefix("sqlite:///").removeprefix("sqlite://").split("?", 1)[0]
    return Path(path + ".inbox")
