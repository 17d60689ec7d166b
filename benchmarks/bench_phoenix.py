"""Arize Phoenix's OTLP receiver and galtea-otel's, side by side on the same workload, in one run: the Phoenix
figures BENCHMARKS.md quotes, reproducible.

    python benchmarks/bench_phoenix.py --quick      # 400 sessions x 10 requests, 1 round: about 4 minutes
    python benchmarks/bench_phoenix.py [--sessions 400] [--requests 40] [--rounds 2] [--timeout 600]
                                                    # the default: about 22 minutes

The peer is installed for real, pinned (``PINS``), into a virtual environment of its own, cached under
``~/.cache/galtea-otel/bench-phoenix-<hash of the pins>`` (made on the first run with ``python -m venv --clear``
+ pip, about 2 minutes; a ``ready`` marker file says it is complete; reused after). Phoenix then runs as its own
process, ``<venv>/bin/phoenix serve`` (the package's console script), with ``PHOENIX_WORKING_DIR`` set to a
fresh temporary folder (so its SQLite store is ``<that folder>/phoenix.db``, its own), ``PHOENIX_HOST`` =
127.0.0.1, ``PHOENIX_PORT`` / ``PHOENIX_GRPC_PORT`` on free ports and ``PHOENIX_TELEMETRY_ENABLED=false``;
everything else is Phoenix's default (its store: SQLite through ``sqlean``, WAL, ``synchronous = OFF``; its
span queue: 20,000 spans, past which it answers 503; its handler answers 200 once a body is parsed and leaves
the spans to a background task, so here every body was accepted before that queue filled). galtea-otel runs
as ``galtea-otel serve`` with its defaults (``ReceiverProcess`` of ``bench_receiver.py``: SQLite, WAL,
``synchronous = normal``, gRPC off).

- *workload*: ``bench_receiver.py``'s interleaved one, with its own helpers: ``--sessions`` live sessions
  (400) whose turns are spread over ``--requests`` requests (40): each OTLP/HTTP protobuf + gzip request
  carries one turn (3 spans: an inference span with 1 KB of input and of output, an LLM client span and a tool
  span, see ``_otlp.py``) of every session. The same bodies go to Phoenix, to galtea-otel and to the floor in
  a round (each into its own empty store); every round has fresh ids. Phoenix takes the gzip bodies as they are
  (its ``/v1/traces`` handler accepts ``Content-Encoding: gzip``);
- *client*: ``bench_receiver.push`` from 1 client thread on one keep-alive connection: each body is posted
  until it is answered 200; a 503 is retried after its ``Retry-After`` (1 s without one); any other answer
  stops the run. Every answer's status is counted (non-200s are printed);
- *ready*: from process start until it accepts requests: Phoenix's ``GET /healthz`` polled every 50 ms until
  200; galtea-otel's "receiver ready" log line (``ReceiverProcess.ready_seconds``);
- *idle RSS*: VmRSS from ``/proc/<pid>/status`` one second after ready, child processes included;
- *acknowledged rate*: spans/s from the first request to the last 200;
- *stored rate*: spans/s from the first request until the receiver's own store holds every span sent: its
  SQLite file's ``spans`` table counted, read-only (``mode=ro`` URI), every 0.25 s from a thread of this
  script (Phoenix's ``phoenix.db``; galtea-otel's store, which it commits before it acknowledges), and once
  right after the last 200 (a store that holds everything then is timed there, not at the next poll). A store
  still short after ``--timeout`` seconds is reported with what it held and the rate of that. Also printed:
  how many spans were stored when the last 200 came back. At the end each store is queried: span rows, and
  traces + sessions (Phoenix's ``traces`` and ``project_sessions`` tables; galtea-otel's sessions and turns,
  as ``bench_receiver.stored`` reads them);
- *floor*, in the same rounds: ``bench_receiver.plain_floor``, the plain thing in process (gunzip + protobuf
  decode + a walk of every span into a row + one ``executemany`` per request into SQLite, WAL,
  ``synchronous = normal``); every rate is also given as a ratio to the round's floor;
- rounds (``--rounds``) are interleaved: floor, then Phoenix and galtea-otel, in reversed order every other
  round; figures are medians with min-max over rounds, ratios are taken per round.

Time: Phoenix's storing dominates. On this machine (2 cores, shared) it stored about 60 spans/s, so in the
default run each of its runs ends at the 600 s timeout with about three quarters of the 48,000 spans stored
(the rate printed is then that of what was stored); ``--timeout 900`` lets it finish, for about 10 minutes more.
The machine is small and shared, so absolute figures move from run to run: read the ratios and the
side-by-side columns. It replaces figures BENCHMARKS.md quoted without a script (measured by the issue's author:
Phoenix acknowledged about 6,600 spans/s but stored about 156 spans/s, idled at 430 MB, took 9.5 s to start,
and answered 200 before anything was stored).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import hashlib
import http.client
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _otlp import TurnFactory  # noqa: E402
from bench_receiver import (  # noqa: E402
    ReceiverProcess,
    count_of,
    free_port,
    from_list,
    interleaved_bodies,
    plain_floor,
    push,
    ratio,
    rss_mb,
    spans_in,
    stored,
    summary,
)

PINS = ["arize-phoenix==20.26.1"]
PHOENIX = "Phoenix"
GALTEA = "galtea-otel"
POLL = 0.25


def environment() -> Path:
    """The peer's virtual environment (made once, reused while the marker file is there)."""
    digest = hashlib.sha256(json.dumps([sys.version_info[:2], PINS]).encode()).hexdigest()[:12]
    folder = Path.home() / ".cache" / "galtea-otel" / f"bench-phoenix-{digest}"
    if not (folder / "ready").exists():
        print(f"installing {', '.join(PINS)} into {folder} (once, a few minutes)...", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PINS], check=True)
        (folder / "ready").write_text("\n".join(PINS) + "\n")
        print(f"installed in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


class Subject(Protocol):
    """A receiver under test, as this script drives it."""

    port: int
    ready_seconds: float
    database: Path

    def rss(self) -> float: ...

    def stop(self) -> None: ...


class Phoenix:
    """``phoenix serve`` from the peer's environment, as a child process with a fresh working folder."""

    def __init__(self, venv: Path, folder: Path) -> None:
        folder.mkdir()
        self.database = folder / "phoenix.db"
        self.port, grpc_port = free_port(), free_port()
        env = {**os.environ, "PHOENIX_WORKING_DIR": str(folder), "PHOENIX_HOST": "127.0.0.1",
               "PHOENIX_PORT": str(self.port), "PHOENIX_GRPC_PORT": str(grpc_port),
               "PHOENIX_TELEMETRY_ENABLED": "false"}
        self.log = folder / "phoenix.log"
        with self.log.open("wb") as log:
            started = time.perf_counter()
            self.process = subprocess.Popen([str(venv / "bin" / "phoenix"), "serve"], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                            cwd=folder)
        try:
            self._wait_healthy(started + 300)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.perf_counter() - started

    def _wait_healthy(self, deadline: float) -> None:
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"phoenix exited with {self.process.returncode}; see {self.log}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        raise RuntimeError(f"phoenix did not answer /healthz in time; see {self.log}")

    def rss(self) -> float:
        return rss_mb(self.process.pid, descendants=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(60)


class Galtea:
    """``galtea-otel serve`` with its defaults, through ``bench_receiver.ReceiverProcess``."""

    def __init__(self, folder: Path, name: str) -> None:
        self.receiver = ReceiverProcess(folder, name)
        self.port = self.receiver.port
        self.ready_seconds = self.receiver.ready_seconds
        self.database = self.receiver.path

    def rss(self) -> float:
        return self.receiver.rss_mb(children=True)

    def stop(self) -> None:
        self.receiver.stop()


def count_rows(database: Path, table: str = "spans") -> int:
    """Rows of ``table`` in a SQLite file another process writes, read-only; 0 while there is no such table."""
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:
        return 0
    try:
        rows: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return rows
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


class StoreWatch:
    """Counts a store's span rows every ``POLL`` seconds from ``start`` on, until it holds ``want`` or
    ``deadline``; ``full_at``: when it first held them all (perf_counter), ``last``: the last count."""

    def __init__(self, database: Path, want: int, start: float, deadline: float) -> None:
        self.database, self.want, self.start, self.deadline = database, want, start, deadline
        self.last = 0
        self.last_at = start
        self.full_at: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.last = count_rows(self.database)
            self.last_at = time.perf_counter()
            if self.last >= self.want:
                self.full_at = self.last_at
                return
            if self.last_at >= self.deadline:
                return
            time.sleep(POLL)

    def join(self) -> None:
        self.thread.join()


@contextlib.contextmanager
def answers() -> Iterator[collections.Counter[int]]:
    """Counts the status of every HTTP answer this process reads (``push``'s client and its 503 retries)."""
    seen: collections.Counter[int] = collections.Counter()
    original = http.client.HTTPConnection.getresponse

    def counting(self: http.client.HTTPConnection) -> http.client.HTTPResponse:
        response = original(self)
        seen[response.status] += 1
        return response

    http.client.HTTPConnection.getresponse = counting  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        http.client.HTTPConnection.getresponse = original  # type: ignore[method-assign]


def final_counts(name: str, database: Path) -> str:
    """The store queried once the run is over."""
    if name == GALTEA:
        rows, sessions, turns = stored(database)
        return f"{rows:,} span rows, {sessions:,} sessions, {turns:,} turns"
    return (f"{count_rows(database):,} span rows, {count_rows(database, 'traces'):,} traces, "
            f"{count_rows(database, 'project_sessions'):,} sessions")


def run_one(subject: Subject, name: str, bodies: list[bytes], timeout: float) -> dict[str, Any]:
    """One subject on one round's bodies: its ready time, idle RSS, acknowledged and stored rates."""
    time.sleep(1.0)
    idle = subject.rss()
    span_counts = {id(body): spans_in(body) for body in bodies}
    sent = sum(span_counts.values())
    error = ""
    start = time.perf_counter()
    watch = StoreWatch(subject.database, sent, start, start + timeout)
    with answers() as seen:
        try:
            acknowledged, seconds = push(subject.port, from_list(bodies), 1, count_of(span_counts))
        except (RuntimeError, OSError) as exc:
            acknowledged, seconds, error = 0, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    at_last_200 = count_rows(subject.database)
    checked = time.perf_counter()
    peak = subject.rss()
    watch.join()
    if at_last_200 >= sent and (watch.full_at is None or watch.full_at > checked):
        watch.full_at = checked  # all there when the pushing ended: no need to wait for the next poll
    if watch.full_at is not None:
        stored_spans, stored_seconds = watch.want, watch.full_at - start
    else:
        stored_spans, stored_seconds = watch.last, watch.last_at - start
    return {"ready": subject.ready_seconds, "idle": idle, "after": peak, "sent": sent, "requests": len(bodies),
            "acknowledged": acknowledged, "ack_rate": acknowledged / seconds if acknowledged else 0.0,
            "ack_seconds": seconds, "stored": stored_spans, "stored_rate": stored_spans / stored_seconds,
            "stored_seconds": stored_seconds, "complete": watch.full_at is not None, "at_last_200": at_last_200,
            "answers": dict(seen), "error": error, "final": final_counts(name, subject.database)}


def versions(venv: Path) -> str:
    script = ("import importlib.metadata as m, sqlite3, sqlean; "
              "print(m.version('arize-phoenix'), sqlean.sqlite_version, sqlite3.sqlite_version)")
    phoenix, sqlean_version, _ = subprocess.run([str(venv / "bin" / "python"), "-c", script], check=True,
                                                capture_output=True, text=True).stdout.split()
    from importlib.metadata import version

    return (f"Python {platform.python_version()}, arize-phoenix {phoenix} (its SQLite: sqlean {sqlean_version}), "
            f"galtea-otel {version('galtea-otel')} (SQLite {sqlite3.sqlite_version}), {os.cpu_count()} cores")


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    return (f"{statistics.median(values):,.{digits}f} {unit} "
            f"({min(values):,.{digits}f}-{max(values):,.{digits}f})")


def report(results: dict[str, list[dict[str, Any]]], floors: list[float]) -> None:
    rows: list[tuple[str, Callable[[str], str]]] = [
        ("ready after start", lambda n: spread([r["ready"] for r in results[n]], "s", 2)),
        ("idle RSS, 1 s after ready", lambda n: spread([r["idle"] for r in results[n]], "MB")),
        ("RSS after the last 200", lambda n: spread([r["after"] for r in results[n]], "MB")),
        ("acknowledged rate (first request to last 200)", lambda n: summary([r["ack_rate"] for r in results[n]])),
        ("  = x the floor", lambda n: ratio([r["ack_rate"] for r in results[n]], floors)),
        ("stored rate (first request until all stored)", lambda n: summary([r["stored_rate"] for r in results[n]])),
        ("  = x the floor", lambda n: ratio([r["stored_rate"] for r in results[n]], floors)),
    ]
    width = max(len(label) for label, _ in rows) + 2
    column = 44
    print(f"{'':{width}}{PHOENIX:<{column}}{GALTEA}")
    for label, cell in rows:
        print(f"{label:{width}}{cell(PHOENIX):<{column}}{cell(GALTEA)}")
    galtea, phoenix = results[GALTEA], results[PHOENIX]
    print(f"{'floor (plain_floor, in process)':{width}}{summary(floors)}")
    for key, label in (("stored_rate", "stored"), ("ack_rate", "acknowledged")):
        if all(r[key] for r in phoenix):
            print(f"galtea-otel / Phoenix, {label} rate: "
                  f"{ratio([r[key] for r in galtea], [r[key] for r in phoenix])}")
    print("per run (round: sent; answers; stored when the last 200 came back; stored in the end, queried):")
    for name in (PHOENIX, GALTEA):
        for r, run in enumerate(results[name]):
            non_200 = {status: n for status, n in run["answers"].items() if status != 200}
            stored_note = (f"all stored after {run['stored_seconds']:.1f} s" if run["complete"] else
                           f"TIMEOUT: {run['stored']:,} of {run['sent']:,} stored after {run['stored_seconds']:.0f} s")
            print(f"  {name}, round {r + 1}: sent {run['sent']:,} spans in {run['requests']} requests, "
                  f"acknowledged {run['acknowledged']:,} in {run['ack_seconds']:.1f} s; "
                  f"{run['answers'].get(200, 0)} x 200, non-200: {non_200 or 'none'}; "
                  f"{run['at_last_200']:,} stored at the last 200; {stored_note}; {run['final']}"
                  + (f"; FAILED: {run['error']}" if run["error"] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="400 sessions x 10 requests, 1 round")
    parser.add_argument("--sessions", type=int, default=400, help="live sessions (spans per request: 3 x this)")
    parser.add_argument("--requests", type=int, default=40, help="requests (turns per session)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a store may take to hold every span sent, from the first request")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 10, 1
    venv = environment()
    print(versions(venv))
    print(f"workload: {args.sessions} live sessions x {args.requests} requests (each request one turn, 3 spans, of "
          f"every session; protobuf + gzip, sent as is to both), 1 client thread, {args.rounds} interleaved "
          "round(s)", flush=True)
    factory = TurnFactory()
    results: dict[str, list[dict[str, Any]]] = {PHOENIX: [], GALTEA: []}
    floors: list[float] = []
    folder = Path(tempfile.mkdtemp(prefix="bench-phoenix-"))
    try:
        gc.collect()
        gc.freeze()
        for r in range(args.rounds):
            bodies = interleaved_bodies(factory, args.sessions, args.requests, 1_000_000 * (r + 1))
            floors.append(plain_floor(bodies, folder / f"floor{r}.db", "normal"))
            order = [PHOENIX, GALTEA] if r % 2 == 0 else [GALTEA, PHOENIX]
            for name in order:
                print(f"round {r + 1}: {name}...", flush=True)
                subject: Subject = (Phoenix(venv, folder / f"phoenix{r}") if name == PHOENIX
                                    else Galtea(folder, f"galtea{r}"))
                try:
                    results[name].append(run_one(subject, name, bodies, args.timeout))
                finally:
                    subject.stop()
        report(results, floors)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
