"""The receiver's durable ingest rate, against the in-process floor, plus its start time and memory.

    python benchmarks/bench_receiver.py --quick                 # about 2 minutes
    python benchmarks/bench_receiver.py [--rounds 3] [--stream 1000000] [--synchronous full]
    python benchmarks/bench_receiver.py --quick --compare /work/main   # the receiver rows of another checkout too

- *workload* (``--workload interleaved``, the default): 400 live sessions whose turns are spread over 40
  requests: each OTLP/HTTP protobuf + gzip request carries one turn (an inference span with 1 KB of input and
  of output, an LLM client span and a tool span, see ``_otlp.py``) of every one of the 400 sessions, so every
  request touches every session, as a busy receiver sees it. ``--workload whole``: the earlier workload,
  batches of 512 spans where each session's spans arrive together (``_spans.py``);
- *durable rate*: spans/s from the first request to the last acknowledgement (each acknowledged after commit),
  from 1 and from 4 client threads, against ``galtea-otel serve`` running as its own process; at the end the
  store is *queried*: the spans, sessions and turns stored must be the ones sent;
- *floor*, in the same run: the plain thing, in process: gunzip + protobuf decode (``FromString``) + a walk of
  every span's attributes into a row (ids, name, times, session id, the attributes as JSON) + one
  ``executemany`` per request into a SQLite table (WAL, the same ``synchronous`` as the receiver's store);
- *galtea in process*: gunzip + decode + ``Pipeline.ingest`` (for reference: the receiver minus HTTP);
- rounds are interleaved (floor, 1 client, 4 clients, in process; again), figures are medians with min-max;
- *ready*: from process start to the "ready" log line; *idle RSS*: resident memory after it idled a second
  (the receiver's and, when it runs, the assembler's: deferred starts its assembler with the first request on
  a store with nothing to assemble or sweep), and, for deferred, again once the workload was assembled;
- *stream*: ``--stream`` spans pushed through one receiver, its resident memory sampled all along (inline, then
  deferred: the receiver's and the assembler's together, until the inbox is empty);
- *--assemble deferred*, in the same rounds: this tree's receiver acknowledging once a request's rows are
  committed to the store's inbox (``galtea_otel.serve.inbox``), a second process assembling them; its
  *acknowledged* rate (first request to last acknowledgement) and its *assembled* rate (first request until the
  inbox is empty, polled from here), and the store queried after, as for the others;
- ``--compare TREE``: the 1- and 4-client receiver runs are also made with ``galtea-otel serve`` from another
  checkout's tree (its ``galtea_otel`` package, same Python and dependencies), interleaved in the same rounds, so
  this tree's receiver and that one's are measured side by side against the same floors.

Bars (issues 3 and 9): durable >= 0.6x the floor on the interleaved workload; 4 clients >= 1 client; idle RSS
<= 80 MB; ready <= 1 s; RSS flat while 1,000,000 spans stream.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import http.client
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _otlp import TurnFactory  # noqa: E402
from _spans import make_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from galtea_otel.decode.otlp_proto import decode_proto  # noqa: E402
from galtea_otel.pipeline import Pipeline  # noqa: E402
from galtea_otel.store import open_store  # noqa: E402

BATCH = 512
KEY_ATTRIBUTES = {"galtea.session.custom_id", "gen_ai.conversation.id", "session.id"}
DEFERRED = " --assemble deferred"


def template() -> ExportTraceServiceRequest:
    """One request of exactly 512 spans, whole sessions of 1 session span, 1 marker and 5 turns of 4 spans."""
    spans = make_spans(sessions=BATCH // 22 + 1, turns=5)[:BATCH]
    return encode_spans(spans)


def batch_bodies(base: ExportTraceServiceRequest, count: int, offset: int = 0) -> Iterator[bytes]:
    """``count`` gzip bodies of the template, each with its own trace ids, span ids and session keys."""
    for b in range(offset, offset + count):
        request = ExportTraceServiceRequest()
        request.CopyFrom(base)
        tag = b.to_bytes(6, "big")
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.trace_id = tag + span.trace_id[6:]
                    span.span_id = tag[2:] + span.span_id[4:]
                    if span.parent_span_id:
                        span.parent_span_id = tag[2:] + span.parent_span_id[4:]
                    for kv in span.attributes:
                        if kv.key in KEY_ATTRIBUTES:
                            kv.value.string_value = f"b{b}-{kv.value.string_value}"
        yield gzip.compress(request.SerializeToString(), 6)


def interleaved_bodies(factory: TurnFactory, sessions: int, requests: int, offset: int) -> list[bytes]:
    """``requests`` gzip bodies; body r holds turn r of each of ``sessions`` sessions (numbered from offset)."""
    bodies = []
    for r in range(requests):
        request = factory.turns(offset, r, 1)
        spans = request.resource_spans[0].scope_spans[0].spans
        for s in range(offset + 1, offset + sessions):
            spans.extend(factory.turns(s, r, 1).resource_spans[0].scope_spans[0].spans)
        bodies.append(gzip.compress(request.SerializeToString(), 6))
    return bodies


def count_of(counts: dict[int, int]) -> Callable[[bytes], int]:
    return lambda body: counts[id(body)]


def spans_in(body: bytes) -> int:
    request = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _value(any_value: object) -> object:
    kind = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(any_value, kind) if kind in ("string_value", "int_value", "double_value", "bool_value") \
        else str(any_value)


def floor_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """The floor's SQLite table: the span's ids, name, times, session id and attributes as JSON."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, "
                 "parent_span_id TEXT, name TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, "
                 "session TEXT, attributes TEXT NOT NULL, PRIMARY KEY (trace_id, span_id))")
    conn.execute("CREATE INDEX IF NOT EXISTS spans_by_session ON spans (session)")
    return conn


def floor_request(conn: sqlite3.Connection, body: bytes) -> int:
    """The plain thing for one request: gunzip + protobuf decode + walk into rows + one executemany; its spans."""
    request = ExportTraceServiceRequest.FromString(gzip.decompress(body))
    rows = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {kv.key: _value(kv.value) for kv in span.attributes}
                rows.append((span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex() or None,
                             span.name, span.start_time_unix_nano, span.end_time_unix_nano,
                             attributes.get("session.id"), json.dumps(attributes)))
    conn.execute("BEGIN")
    conn.executemany("INSERT OR IGNORE INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    return len(rows)


def plain_floor(bodies: list[bytes], path: Path, synchronous: str) -> float:
    """The plain thing: gunzip + protobuf decode + walk into rows + one executemany per request into SQLite."""
    conn = floor_connect(path, synchronous)
    start = time.perf_counter()
    for body in bodies:
        floor_request(conn, body)
    elapsed = time.perf_counter() - start
    conn.close()
    return sum(map(spans_in, bodies)) / elapsed


def in_process(bodies: list[bytes], url: str) -> float:
    """gunzip + decode + Pipeline.ingest into a store, in process (the receiver minus HTTP)."""
    store = open_store(url)
    pipeline = Pipeline(store)
    start = time.perf_counter()
    for body in bodies:
        pipeline.ingest(decode_proto(gzip.decompress(body)).spans)
    elapsed = time.perf_counter() - start
    store.close()
    return sum(map(spans_in, bodies)) / elapsed


def stored(path: Path) -> tuple[int, int, int]:
    """(span rows, sessions, turns) in the store at ``path``, queried."""
    conn = sqlite3.connect(path)
    spans = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
    conn.close()
    store = open_store(f"sqlite:///{path}")
    sessions = store.list_sessions(limit=10**9)
    store.close()
    return spans, len(sessions), sum(s.turn_count for s in sessions)


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int, descendants: bool = False) -> float:
    """VmRSS of ``pid`` in MB (``descendants``: plus that of every process under it)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            if descendants:
                for task in Path(f"/proc/{current}/task").iterdir():
                    pending += [int(p) for p in (task / "children").read_text().split()]
    return total


class ReceiverProcess:
    """``galtea-otel serve`` as a child process on a free port (gRPC off)."""

    def __init__(self, folder: Path, name: str, synchronous: str = "normal", tree: Path = ROOT,
                 extra: tuple[str, ...] = ()) -> None:
        self.path = folder / (name + ".db")
        self.port = free_port()
        command = [
            sys.executable,
            "-c",
            "from galtea_otel.cli.main import main; main()",
            "serve",
            "--store",
            f"sqlite:///{self.path}?synchronous={synchronous}",
            "--http",
            f"127.0.0.1:{self.port}",
            "--grpc",
            "off",
            # The workload's timestamps are fixed (May 2026): with the default 30 minutes its sessions would be
            # idle-closed, and reopened by their next turn, at every sweep, which live traffic never sees.
            "--idle-close",
            "5256000",
            *extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        started = time.perf_counter()
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=tree)
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "receiver ready" in line:
                break
        else:
            raise RuntimeError("the receiver did not start")
        self.ready_seconds = time.perf_counter() - started
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained

    def rss_mb(self, children: bool = False) -> float:
        """Resident memory of the receiver (``children``: plus its child processes', the assembler's)."""
        return rss_mb(self.process.pid, descendants=children)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(120)

    def wait_assembled(self) -> None:
        """``--assemble deferred``: poll the inbox file until nothing is left to assemble."""
        inbox = self.path.with_name(self.path.name + ".inbox")
        conn = sqlite3.connect(inbox, timeout=60)
        while conn.execute("SELECT count(*) FROM inbox WHERE failed IS NULL").fetchone()[0]:
            time.sleep(0.01)
        conn.close()


def package_of(tree: Path) -> str:
    """Where ``galtea_otel`` comes from for a receiver started as ``ReceiverProcess`` starts it from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found = subprocess.run([sys.executable, "-c", "import galtea_otel; print(galtea_otel.__file__)"], env=env,
                           cwd=tree, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree):
        raise RuntimeError(f"a receiver started from {tree} would import {found}")
    return found


def push(port: int, bodies: Callable[[], bytes | None], threads: int,
         spans_of: Callable[[bytes], int] = lambda body: BATCH) -> tuple[int, float]:
    """Post bodies until exhausted from ``threads`` keep-alive connections; retry 503s. (spans, seconds)"""
    acknowledged = [0]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
        while (body := bodies()) is not None:
            while True:
                conn.request("POST", "/v1/traces", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
                if response.status != 503:
                    raise RuntimeError(f"HTTP {response.status}")
                time.sleep(float(response.getheader("Retry-After") or 1))
            with lock:
                acknowledged[0] += spans_of(body)
        conn.close()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return acknowledged[0], time.perf_counter() - start


def from_list(bodies: list[bytes]) -> Callable[[], bytes | None]:
    items = iter(bodies)
    lock = threading.Lock()

    def next_body() -> bytes | None:
        with lock:
            return next(items, None)

    return next_body


def summary(values: list[float], unit: str = "spans/s") -> str:
    return f"{statistics.median(values):,.0f} {unit} ({min(values):,.0f}-{max(values):,.0f})"


def ratio(values: list[float], floors: list[float]) -> str:
    ratios = [v / f for v, f in zip(values, floors, strict=True)]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def at_rest(folder: Path, bodies: list[bytes], synchronous: str, idle_exit: float = 5.0) -> str:
    """The default receiver (deferred) after the interleaved workload, its sessions left open (no sweep due: see
    ``ReceiverProcess``): RSS with the assembler's 1 s after the last record is assembled, then once the
    assembler has left (``--assembler-idle-exit``, 60 s by default, shortened here: what is left after it does
    not depend on the wait) and the receiver has trimmed (2 s without requests)."""
    receiver = ReceiverProcess(folder, "rest", synchronous, extra=("--assembler-idle-exit", str(idle_exit)))
    try:
        counts = {id(body): spans_in(body) for body in bodies}
        push(receiver.port, from_list(bodies), 1, count_of(counts))
        receiver.wait_assembled()
        time.sleep(1.0)
        burst = receiver.rss_mb(children=True)
        started = time.perf_counter()
        while rss_mb(receiver.process.pid, descendants=True) > rss_mb(receiver.process.pid):
            if time.perf_counter() - started > 10 * idle_exit + 60:
                raise RuntimeError("the assembler did not leave")
            time.sleep(0.2)
        left = time.perf_counter() - started
        time.sleep(3.0)
        rest = receiver.rss_mb(children=True)
    finally:
        receiver.stop()
    conn = sqlite3.connect(receiver.path)
    pending = conn.execute("SELECT count(*) FROM sessions WHERE status = 'PENDING'").fetchone()[0]
    conn.close()
    return (f"{rest:.0f} MB once the assembler left ({left:.0f} s after; {burst:.0f} MB with it 1 s after the "
            f"burst), {pending:,} sessions still open (bar 80 MB)")


def stream(folder: Path, base: ExportTraceServiceRequest, count: int, synchronous: str, mode: str) -> str:
    """``count`` spans through one receiver from 4 clients, its memory sampled every 0.5 s (deferred: with the
    assembler's, until the inbox is empty)."""
    receiver = ReceiverProcess(folder, "stream-" + mode, synchronous, extra=("--assemble", mode))
    generator = batch_bodies(base, count // BATCH, offset=100_000)
    lock = threading.Lock()

    def next_body() -> bytes | None:
        with lock:
            return next(generator, None)

    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(receiver.rss_mb(children=True))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    spans, seconds = push(receiver.port, next_body, 4)
    assembled = ""
    if mode == "deferred":
        receiver.wait_assembled()
        assembled = f", {spans / (time.perf_counter() - started):,.0f} assembled"
    done.set()
    sampler.join()
    receiver.stop()
    tail = samples[len(samples) // 2 :] or samples
    return (f"min {min(samples):.0f} / max {max(samples):.0f} MB; second half {min(tail):.0f}-{max(tail):.0f} MB "
            f"({spans:,} spans, {spans / seconds:,.0f} spans/s acknowledged{assembled})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds of 400 sessions x 20 requests; no stream")
    parser.add_argument("--workload", choices=("interleaved", "whole"), default="interleaved")
    parser.add_argument("--sessions", type=int, default=400, help="interleaved: live sessions")
    parser.add_argument("--requests", type=int, default=40, help="interleaved: requests (turns per session)")
    parser.add_argument("--batches", type=int, default=60, help="whole: batches of 512 spans")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synchronous", choices=("normal", "full"), default="normal",
                        help="the SQLite store's synchronous mode (the receiver's and the floor's)")
    parser.add_argument("--stream", type=int, default=200_000, help="spans for the memory run (0: skip)")
    parser.add_argument("--compare", type=Path, metavar="TREE",
                        help="also run the receiver from this checkout (e.g. /work/main), side by side")
    args = parser.parse_args()
    trees = {"": ROOT}
    if args.compare is not None:
        tree = args.compare.resolve()
        trees[f" [{tree}]"] = tree
        for path in trees.values():
            print(f"receiver package: {package_of(path)}")
    if args.quick:
        args.requests, args.rounds, args.stream = 20, 2, 0
    base = template()
    factory = TurnFactory()
    results: dict[str, str] = {}
    rates: dict[str, list[float]] = {"floor": [], "in process": []}
    for label in (*trees, DEFERRED):
        rates["1" + label], rates["4" + label] = [], []
    for clients in ("1", "4"):
        rates[f"{clients} acknowledged{DEFERRED}"] = []
    counts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        gc.collect()
        gc.freeze()  # the benchmark's own objects must not slow the floor's garbage collections

        def workload(offset: int) -> list[bytes]:
            if args.workload == "interleaved":
                return interleaved_bodies(factory, args.sessions, args.requests, offset)
            return list(batch_bodies(base, args.batches, offset=offset))

        ready, idle, after = [], [], []
        for r in range(args.rounds):
            bodies = workload(1_000_000 * (4 * r + 1))
            rates["floor"].append(plain_floor(bodies, folder / f"floor{r}.db", args.synchronous))
            runs = [(label, threads) for label in trees for threads in (1, 4)]
            runs += [(DEFERRED, threads) for threads in (1, 4)]
            for label, threads in (runs if r % 2 == 0 else runs[::-1]):
                deferred = label == DEFERRED
                # Each mode asked for by name: the default is ``auto`` (deferred on SQLite) since stop 25, and
                # an earlier tree's default was inline.
                receiver = ReceiverProcess(folder, f"rate{r}-{threads}{len(label)}", args.synchronous,
                                           ROOT if deferred else trees[label],
                                           ("--assemble", "deferred" if deferred else "inline"))
                ready.append(receiver.ready_seconds)
                time.sleep(1.0)
                idle.append(receiver.rss_mb(children=True))  # deferred: an assembler, if it started, counts
                fresh = workload(1_000_000 * (4 * r + 1 + threads))
                span_counts = {id(body): spans_in(body) for body in fresh}
                spans, seconds = push(receiver.port, from_list(fresh), threads, count_of(span_counts))
                if deferred:
                    rates[f"{threads} acknowledged{label}"].append(spans / seconds)
                    started = time.perf_counter()
                    receiver.wait_assembled()
                    seconds += time.perf_counter() - started  # the rate below is of assembled records
                    time.sleep(1.0)
                    after.append(receiver.rss_mb(children=True))
                receiver.stop()
                sent = sum(span_counts.values())
                rows, sessions, turns = stored(receiver.path)
                want_turns = args.sessions * args.requests if args.workload == "interleaved" else None
                ok = rows == sent and (want_turns is None or turns == want_turns)
                counts.append(f"{threads} client(s){label}, round {r + 1}: sent {sent:,} spans, "
                              f"acknowledged {spans:,}; stored {rows:,} span rows, {sessions:,} sessions, "
                              f"{turns:,} turns"
                              + ("" if ok else "  MISMATCH"))
                rates[f"{threads}{label}"].append(rows / seconds)  # what was stored, per second
            rates["in process"].append(in_process(bodies, f"sqlite:///{folder / f'inproc{r}.db'}"
                                                  f"?synchronous={args.synchronous}"))
        floors = rates["floor"]
        shape = (f"{args.sessions} live sessions x {args.requests} requests (each request one turn of every "
                 "session)" if args.workload == "interleaved" else f"{args.batches} batches of 512 spans, whole "
                 "sessions")
        print(f"workload: {shape}; {args.rounds} interleaved round(s); SQLite synchronous={args.synchronous}")
        print(f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores")
        results["floor (gunzip + decode + walk + executemany, in process)"] = summary(floors)
        results["galtea in process (gunzip + decode + Pipeline.ingest)"] = (
            f"{summary(rates['in process'])} = {ratio(rates['in process'], floors)} the floor")
        for label in trees:
            for clients in ("1", "4"):
                results[f"durable rate, {clients} client thread(s), --assemble inline{label}"] = (
                    f"{summary(rates[clients + label])} = {ratio(rates[clients + label], floors)} the floor "
                    "(bar 0.6x)")
            results[f"4 clients / 1 client, --assemble inline{label}"] = (
                ratio(rates["4" + label], rates["1" + label]) + " (bar >= 1.0x)")
        for clients in ("1", "4"):
            results[f"acknowledged rate, {clients} client thread(s){DEFERRED} (the default on SQLite)"] = (
                f"{summary(rates[f'{clients} acknowledged{DEFERRED}'])} = "
                f"{ratio(rates[f'{clients} acknowledged{DEFERRED}'], floors)} the floor (bar 0.6x)")
            results[f"assembled rate, {clients} client thread(s){DEFERRED}"] = (
                f"{summary(rates[clients + DEFERRED])} = {ratio(rates[clients + DEFERRED], floors)} the floor "
                "(to the last record assembled)")
        results[f"4 clients / 1 client{DEFERRED}, acknowledged"] = ratio(
            rates[f"4 acknowledged{DEFERRED}"], rates[f"1 acknowledged{DEFERRED}"]) + " (bar >= 1.0x)"
        for label in list(trees)[1:]:
            for clients in ("1", "4"):
                results[f"{clients} client(s): this tree / {label.strip(' []')}"] = ratio(
                    rates[clients], rates[clients + label])
        results["ready after start"] = f"{statistics.median(ready):.2f} s, max {max(ready):.2f} s (bar 1 s)"
        results["idle RSS"] = f"{statistics.median(idle):.0f} MB, max {max(idle):.0f} MB (bar 80 MB)"
        results[f"idle RSS after the workload{DEFERRED} (receiver + assembler)"] = (
            f"{statistics.median(after):.0f} MB, max {max(after):.0f} MB")
        results[f"RSS at rest after the workload{DEFERRED}, sessions left open"] = at_rest(
            folder, workload(9_000_000), args.synchronous)
        for mode in ("inline", "deferred") if args.stream else ():
            what = "receiver" if mode == "inline" else "receiver + assembler"
            results[f"RSS while {args.stream:,} spans stream, --assemble {mode} ({what})"] = stream(
                folder, base, args.stream, args.synchronous, mode)
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value}")
    print("stored, queried at the end of each run:")
    for line in counts:
        print("  " + line)


if __name__ == "__main__":
    main()
