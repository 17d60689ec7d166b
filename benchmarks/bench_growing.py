"""The cost of one turn of a session that keeps growing, against a turn of a fresh session, side by side.

    python benchmarks/bench_growing.py --quick        # turns 1-100 and 2,000; the pre-fill equivalence check
    python benchmarks/bench_growing.py                # + 5,000 and 10,000 turns
    python benchmarks/bench_growing.py --postgres postgresql://127.0.0.1:5432/test   # on PostgreSQL too

Each turn is its own OTLP request (protobuf encoded by the OpenTelemetry SDK's encoder, see ``_otlp.py``),
handled by the receiver's own ingest path (``galtea_otel.serve.ingest.process``: decode, translate, commit)
on a real SQLite file (``synchronous=NORMAL``, the default). Every timed turn of the growing session is
followed by the first turn of a brand-new session, timed the same way: the ratio of the medians is the figure.

Turns 1-100 are ingested and timed one by one. A level of N turns (2,000...) is reached by *pre-filling*: the
turns up to N arrive in requests of 500 turns, which by SESSION_MODEL section 4 (records are a function of the
set of spans, whatever the batching) stores the same state as N requests of one turn; ``--quick`` checks that
on a 150-turn session of each shape (the assembled session records, compared field by field). Then ``--samples``
turns are timed at that level, each its own request. A level whose turn takes over ``--cap`` seconds ends the
shape's run (said in the output).

Two shapes: ``traces`` (each turn its own trace, as an app sends one trace per request) and ``huge`` (one
``galtea.session`` span around every turn, all in one trace, the session span arriving last: its arrival is
timed too).

Bar (issue 9): a turn at 2,000 turns <= 2x a fresh turn, and flat (about the same) to 10,000.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _otlp import TurnFactory

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.ingest import process
from galtea_otel.store import open_store

LIMIT = 1 << 30
PREFILL_BATCH = 500


@functools.cache
def factory() -> TurnFactory:
    """One factory for the whole run: every copy of a turn has the same relative times and texts."""
    return TurnFactory()


class Bench:
    def __init__(self, url: str) -> None:
        self.store = open_store(url)
        self.pipeline = Pipeline(self.store)
        self.factory = factory()
        self.next_session = 1_000_000  # fresh sessions get numbers from here

    def ingest(self, request: Any) -> float:
        body = request.SerializeToString()
        start = time.perf_counter()
        outcome = process(self.pipeline, body, "proto", "identity", LIMIT)
        elapsed = time.perf_counter() - start
        if outcome.status != 200 or outcome.rejected:
            raise SystemExit(f"ingest answered {outcome}")
        return elapsed

    def fresh_turn(self, shape: str) -> float:
        self.next_session += 1
        return self.ingest(self.factory.turns(self.next_session, 0, 1, shape))

    def turn_count(self, s: int) -> int:
        found = self.pipeline.session(f"conv-{s}")
        return len(found.inference_results) if found is not None else 0

    def close(self) -> None:
        self.store.close()


def prefill(bench: Bench, s: int, have: int, want: int, shape: str) -> float:
    start = time.perf_counter()
    while have < want:
        count = min(PREFILL_BATCH, want - have)
        bench.ingest(bench.factory.turns(s, have, count, shape))
        have += count
    return time.perf_counter() - start


def summary(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:8.2f} ms ({min(values) * 1e3:.2f}-{max(values) * 1e3:.2f})"


def run_shape(bench: Bench, shape: str, levels: list[int], samples: int, cap: float) -> list[str]:
    s = {"traces": 1, "huge": 2}[shape]
    lines = [f"shape {shape!r}: turn of the growing session vs first turn of a fresh session, ms median (min-max)"]
    grown, fresh = [], []
    for t in range(100):
        grown.append(bench.ingest(bench.factory.turns(s, t, 1, shape)))
        fresh.append(bench.fresh_turn(shape))
    have = 100
    base = statistics.median(fresh)
    lines.append(f"  turns 1-100      growing {summary(grown)}   fresh {summary(fresh)}   "
                 f"ratio {statistics.median(grown) / base:.2f}x")
    for level in levels:
        filled = prefill(bench, s, have, level, shape)
        have = level
        grown, fresh = [], []
        capped = False
        for _ in range(samples):
            grown.append(bench.ingest(bench.factory.turns(s, have, 1, shape)))
            have += 1
            fresh.append(bench.fresh_turn(shape))
            if grown[-1] > cap:
                capped = True
                break
        ratio = statistics.median(grown) / statistics.median(fresh)
        lines.append(f"  turn at {level:>6,}  growing {summary(grown)}   fresh {summary(fresh)}   "
                     f"ratio {ratio:.2f}x   (pre-fill {filled:.1f} s)")
        if capped:
            lines.append(f"  a turn took over {cap:.0f} s: larger levels skipped")
            break
    if shape == "huge":
        seconds = bench.ingest(bench.factory.session_span(s, have))
        lines.append(f"  the session span arriving last, after {have:,} turns: {seconds * 1e3:.1f} ms")
    stored = bench.turn_count(s)
    lines.append(f"  stored: {stored:,} turns of {have:,} sent" + ("" if stored == have else "  MISMATCH"))
    return lines


def check_prefill(url_for: Any, shape: str, turns: int = 150) -> str:
    """The same session, once turn by turn and once in requests of PREFILL_BATCH turns: the same records?"""
    details = []
    for name in ("one", "bulk"):
        bench = Bench(url_for(f"check-{shape}-{name}"))
        if name == "one":
            for t in range(turns):
                bench.ingest(bench.factory.turns(7, t, 1, shape))
        else:
            prefill(bench, 7, 0, turns, shape)
        if shape == "huge":
            bench.ingest(bench.factory.session_span(7, turns))
        found = bench.pipeline.session("conv-7")
        bench.close()
        details.append(found.model_dump(mode="json") if found is not None else None)
    one, bulk = details
    if one is None or one != bulk:
        differing = sorted(k for k in (one or {}) if (one or {}).get(k) != (bulk or {}).get(k))
        raise SystemExit(f"pre-fill check failed for {shape!r}: fields differ: {differing}")
    return f"pre-fill check ({shape}, {turns} turns): turn by turn and in requests of {PREFILL_BATCH} " \
           f"store the same session record ({len(one['inference_results'])} turns)"


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[Any]:
    import psycopg

    schema = f"bench_growing_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"

    def url_for(name: str) -> str:
        return f"{url}{sep}options=-csearch_path%3D{schema}_{name}"

    made: list[str] = []

    def make(name: str) -> str:
        name = name.replace("-", "_")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}_{name}")
        made.append(f"{schema}_{name}")
        return url_for(name)

    try:
        yield make
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for name in [schema, *made]:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="levels 2,000 only, and the pre-fill check")
    parser.add_argument("--levels", default="2000,5000,10000")
    parser.add_argument("--samples", type=int, default=7, help="timed turns per level")
    parser.add_argument("--cap", type=float, default=20.0, help="seconds: a slower turn ends the shape's run")
    parser.add_argument("--shapes", default="traces,huge")
    parser.add_argument("--check", action="store_true", help="run the pre-fill equivalence check (--quick does)")
    parser.add_argument("--postgres", metavar="URL", help="run on PostgreSQL at URL too (a schema per run)")
    args = parser.parse_args()
    levels = [2000] if args.quick else [int(x) for x in args.levels.split(",")]
    samples = 5 if args.quick else args.samples
    shapes = args.shapes.split(",")
    print(f"Python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
          f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores; SQLite store synchronous=NORMAL (default)")
    with tempfile.TemporaryDirectory() as tmp:
        def sqlite_url(name: str) -> str:
            return f"sqlite:///{Path(tmp) / (name + '.db')}"

        stores: list[tuple[str, Any]] = [("SQLite", sqlite_url)]
        with contextlib.ExitStack() as stack:
            if args.postgres:
                stores.append(("PostgreSQL", stack.enter_context(postgres_schema(args.postgres))))
            for label, url_for in stores:
                if args.quick or args.check:
                    for shape in shapes:
                        print(f"[{label}] {check_prefill(url_for, shape)}", flush=True)
                for shape in shapes:
                    started = time.perf_counter()
                    bench = Bench(url_for(f"growing-{shape}"))
                    for line in run_shape(bench, shape, levels, samples, args.cap):
                        print(f"[{label}] {line}", flush=True)
                    bench.close()
                    print(f"[{label}] shape {shape!r} took {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
