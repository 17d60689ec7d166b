"""What recording sessions costs a process, against what the OpenTelemetry SDK's own OTLP encoding costs it.

    python benchmarks/bench_export.py --quick          # about 1 minute
    python benchmarks/bench_export.py [--rounds 5] [--sessions 250] [--turns 20]
    python benchmarks/bench_export.py --burst          # the bounded queue under a burst (issue 9, point 4)

**Concurrent sessions** (the default): an asyncio app runs ``--sessions`` concurrent sessions
(``async with galtea_otel.session(...)``) of ``--turns`` turns each: an ``@galtea_otel.inference`` call with
1 KB of input and output, a tool span (``galtea_otel.span(type="TOOL")``) inside it, a yield to the event loop
between turns, so the sessions' spans interleave in every export batch. The same app runs, in interleaved
rounds, under:

- ``configure(store=<a fresh SQLite file>)``: the session exporter (translate, assemble, commit);
- ``configure(exporter=EncodeOnly())``: an exporter that only OTLP-encodes each batch with the SDK's
  ``encode_spans`` + ``SerializeToString`` (what any OTLP exporter spends before the network).

Each run is measured in whole-process CPU time (``time.process_time``: the app's thread and the export thread)
from the first session to the end of ``flush()``. The export queue is sized so that nothing is dropped (checked:
``spans_dropped`` must stay 0), and the store is queried at the end: every turn must be stored.

Bar (issue 9): configure(store) CPU <= 1.25x configure(OTLP encoding only).

``--tokens``: every call also reports its token counts (``record_usage``), different from call to call as real
calls' are, so the store prices every turn from genai-prices' table (the run checks that every turn got a cost).

**Burst** (``--burst``): one thread starts ``@inference`` spans as fast as it can (or at ``--rate``) for
``--seconds``, in sessions of ``--per-session`` turns, with each of ``--queues`` (the old default 2,048 and the
new 8,192), into the session exporter on SQLite;
prints the production rate, the spans dropped (counted by galtea-otel), and the rate the exporter sustains
(spans exported per second of wall time inside its ``export()``, on the export thread), while the app runs
(sharing the GIL) and alone (draining the queue after the burst). Then what a full queue costs in memory: an
exporter that blocks holds the queue full (``--queues`` each, plus the batch inside ``export()``) of ``@inference``
spans with 1 KB and with 64 KiB (the default ``max_value_bytes``) of input and output, with the byte bound
(``GALTEA_OTEL_MAX_QUEUE_BYTES``) and without (the span bound alone, as before); printed are the process's RSS
growth (``VmRSS``, after a ``gc.collect()``, a fresh process per case) and the bytes a queued span holds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import galtea_otel
from galtea_otel.export.exporter import SessionExporter
from galtea_otel.store import open_store

TEXT = "lorem ipsum dolor sit amet " * 38  # about 1 KB


class EncodeOnly(SpanExporter):
    """The plain baseline: OTLP protobuf encoding of every batch, nothing else."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class TimedSessionExporter(SessionExporter):
    """The session exporter, with the wall time its export() calls took (on the export thread)."""

    busy = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        start = time.perf_counter()
        try:
            return super().export(spans)
        finally:
            self.busy += time.perf_counter() - start


TOKENS = False  # --tokens: every call reports token counts, different from call to call (as real calls do)
_calls = itertools.count()


@galtea_otel.inference(model="gpt-4o-mini")
async def chat(prompt: str) -> str:
    with galtea_otel.span("lookup", type="TOOL") as tool:
        tool.set_input({"q": prompt[:20]})
        tool.set_output({"hits": [1, 2, 3]})
    if TOKENS:
        n = next(_calls)
        galtea_otel.record_usage(input_tokens=900 + n % 7919, output_tokens=150 + n % 613)
    return "answer: " + TEXT


async def conversation(s: int, turns: int) -> None:
    async with galtea_otel.session(custom_id=f"conv-{s}", version="1.0"):
        for t in range(turns):
            await chat(f"question {t}: {TEXT}")
            await asyncio.sleep(0)  # let the other sessions run: their spans interleave


async def app(sessions: int, turns: int) -> None:
    await asyncio.gather(*(conversation(s, turns) for s in range(sessions)))


def run(mode: str, folder: Path, tag: str, sessions: int, turns: int) -> tuple[float, int]:
    """(CPU seconds of the whole process, turns stored or spans encoded) for one run of the app."""
    queue = sessions * turns * 4 + 10_000
    provider = TracerProvider()
    path = folder / f"{tag}.db"
    encoder = EncodeOnly()
    if mode == "store":
        galtea_otel.configure(store=f"sqlite:///{path}", tracer_provider=provider, max_queue_size=queue)
    else:
        galtea_otel.configure(exporter=encoder, tracer_provider=provider, max_queue_size=queue)
    dropped_before = galtea_otel.stats().get("spans_dropped", 0)
    gc.collect()
    start = time.process_time()
    asyncio.run(app(sessions, turns))
    if not galtea_otel.flush(timeout_s=600):
        raise SystemExit("flush timed out")
    cpu = time.process_time() - start
    galtea_otel.shutdown()
    provider.shutdown()
    if galtea_otel.stats().get("spans_dropped", 0) != dropped_before:
        raise SystemExit("spans were dropped: the comparison would not be fair")
    if mode == "store":
        store = open_store(f"sqlite:///{path}")
        done = sum(s.turn_count for s in store.list_sessions(limit=10**9))
        store.close()
        if done != sessions * turns:
            raise SystemExit(f"stored {done} turns, expected {sessions * turns}")
        if TOKENS:
            with sqlite3.connect(path) as conn:
                unpriced = conn.execute("SELECT count(*) FROM turns WHERE cost IS NULL").fetchone()[0]
            if unpriced:
                raise SystemExit(f"{unpriced} turns were not priced")
        return cpu, done
    return cpu, encoder.spans


def concurrent(args: argparse.Namespace) -> None:
    cpu: dict[str, list[float]] = {"store": [], "encode": []}
    with tempfile.TemporaryDirectory() as tmp:
        run("encode", Path(tmp), "warm", 20, 2)
        spans = 0
        for r in range(args.rounds):
            for mode in (("store", "encode") if r % 2 else ("encode", "store")):
                seconds, count = run(mode, Path(tmp), f"r{r}", args.sessions, args.turns)
                cpu[mode].append(seconds)
                spans = count if mode == "encode" else spans
    ratios = [s / e for s, e in zip(cpu["store"], cpu["encode"], strict=True)]
    print(f"{args.sessions} concurrent asyncio sessions x {args.turns} turns ({spans:,} spans a run"
          + (", token counts on every call" if TOKENS else "") + "), "
          f"{args.rounds} interleaved rounds; whole-process CPU (time.process_time), app + export thread")
    print(f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
          f"SQLite {sqlite3.sqlite_version} (synchronous=NORMAL, the default), {os.cpu_count()} cores")
    for mode, label in (("encode", "configure(exporter=OTLP encoding only)"),
                        ("store", "configure(store=SQLite)")):
        values = cpu[mode]
        print(f"{label:42s} {statistics.median(values):6.2f} s CPU ({min(values):.2f}-{max(values):.2f})")
    verdict = "met" if statistics.median(ratios) <= 1.25 else "NOT met"
    print(f"ratio store / encoding: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); bar <= 1.25x: {verdict}")


def burst(args: argparse.Namespace) -> None:
    """Spans produced at full speed for a few seconds: what the default queue keeps and drops."""
    print(f"burst: one thread, sessions of {args.per_session} @inference calls (1 KB in and out) for "
          f"{args.seconds:.0f} s"
          + (f" at {args.rate:,} spans/s" if args.rate else " as fast as it can") + ", SQLite store")

    @galtea_otel.inference
    def call(prompt: str) -> str:
        return prompt

    prompt = TEXT
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.queues:
            provider = TracerProvider()
            exporter = TimedSessionExporter(f"sqlite:///{Path(tmp) / f'burst{size}.db'}")
            galtea_otel.configure(exporter=exporter, tracer_provider=provider, max_queue_size=size)
            exported_before = galtea_otel.stats().get("spans_exported", 0)
            dropped_before = galtea_otel.stats().get("spans_dropped", 0)
            started = time.perf_counter()
            produced = 0
            deadline = started + args.seconds
            s = 0
            while time.perf_counter() < deadline:
                s += 1
                with galtea_otel.session(custom_id=f"burst-{size}-{s}", version="1"):
                    for _ in range(args.per_session):
                        if args.rate:
                            while produced > (time.perf_counter() - started) * args.rate:
                                time.sleep(0.0005)
                        call(prompt)
                        produced += 1
                        if time.perf_counter() >= deadline:
                            break
            produce_s = time.perf_counter() - started
            at_stop = (galtea_otel.stats().get("spans_exported", 0), exporter.busy)
            galtea_otel.flush(timeout_s=600)
            stats = galtea_otel.stats()
            exported = stats.get("spans_exported", 0) - exported_before
            dropped = stats.get("spans_dropped", 0) - dropped_before
            galtea_otel.shutdown()
            provider.shutdown()
            drained = stats.get("spans_exported", 0) - at_stop[0]
            drain = drained / (exporter.busy - at_stop[1]) if exporter.busy > at_stop[1] else float("nan")
            produced += 2 * s  # each session's span and start marker
            print(f"  queue {size:>7,}: produced {produced:>7,} spans at {produced / produce_s:>7,.0f}/s; "
                  f"dropped {dropped:>7,}; exported {exported:>7,} "
                  f"in {exporter.busy:.1f} s of exporting: {exported / exporter.busy:,.0f} spans/s while the app "
                  f"runs, {drain:,.0f} spans/s alone (draining)")


def _rss() -> int:
    """The process's resident set size now, in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Blocked(SpanExporter):
    """An exporter stuck in its first export() until released: the queue behind it fills up."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.entered = threading.Event()
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(600)
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def queue_memory(args: argparse.Namespace) -> None:
    """The RSS a full export queue holds, for spans with 1 KB and 64 KiB of captured input and output; each case
    in a fresh process (freed memory stays in a process's RSS and would hide the next case's growth)."""
    import subprocess
    import sys

    print("memory of a full queue (an exporter blocked in export(); a fresh process per case, RSS growth after "
          "gc.collect()); byte bound: GALTEA_OTEL_MAX_QUEUE_BYTES (default 32 MiB), none: 2**40")
    for label, value in (("1 KB in and out", len(TEXT)), ("64 KiB in and out", 64 * 1024 - 16)):
        for bound in ("", str(2**40)):
            for size in args.queues:
                env = {**os.environ, "GALTEA_OTEL_MAX_QUEUE_BYTES": bound} if bound else None
                done = subprocess.run([sys.executable, __file__, "--memory-case", str(size), str(value)],
                                      capture_output=True, text=True, check=True, env=env)
                held, grown = (int(v) for v in done.stdout.split())
                print(f"  {label:18s} queue {size:>6,} spans, {'no byte bound' if bound else 'byte bound':13s}: "
                      f"{held:>6,} spans held, RSS +{grown / 2**20:6.1f} MiB, {grown / held / 1024:6.1f} KiB a span")


def memory_case(size: int, value_bytes: int) -> None:
    """Fill a queue of ``size`` behind a blocked exporter; print the spans it holds and the RSS growth."""

    @galtea_otel.inference
    def call(prompt: str) -> str:
        return prompt

    prompt = (TEXT * (value_bytes // len(TEXT) + 1))[:value_bytes]
    provider = TracerProvider()
    exporter = Blocked()
    galtea_otel.configure(exporter=exporter, tracer_provider=provider, max_queue_size=size, schedule_delay_millis=50)
    call(prompt)
    exporter.entered.wait(10)  # the worker holds one span in export(); the queue is empty
    gc.collect()
    before = _rss()
    dropped_before = galtea_otel.stats().get("spans_dropped", 0)
    produced = 0
    while galtea_otel.stats().get("spans_dropped", 0) == dropped_before:  # until the queue is full
        for _ in range(64):
            call(prompt)
            produced += 1
    gc.collect()
    held = produced - (galtea_otel.stats().get("spans_dropped", 0) - dropped_before)
    print(held, _rss() - before)
    os._exit(0)  # the blocked exporter would hold the shutdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 250 sessions x 20 turns")
    parser.add_argument("--sessions", type=int, default=250)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", action="store_true", help="the bounded queue under a burst")
    parser.add_argument("--seconds", type=float, default=3.0, help="burst: how long the loop produces")
    parser.add_argument("--rate", type=int, default=0, help="burst: spans/s to produce (0: as fast as it can)")
    parser.add_argument("--per-session", type=int, default=10, help="burst: turns per session")
    parser.add_argument("--queues", type=lambda v: [int(x) for x in v.split(",")], default=[2048, 8192],
                        help="burst: queue sizes to try")
    parser.add_argument("--tokens", action="store_true",
                        help="each call reports token counts (priced from the table by the store, a cost each turn)")
    parser.add_argument("--memory-case", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        memory_case(*args.memory_case)
        return
    if args.quick:
        args.rounds = 3
    global TOKENS
    TOKENS = args.tokens
    if args.burst:
        burst(args)
        queue_memory(args)
    else:
        concurrent(args)


if __name__ == "__main__":
    main()
