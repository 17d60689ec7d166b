"""What one request writes to the store, page by page: where the interleaved workload's cost goes.

    python benchmarks/bench_write_amplification.py            # 400 sessions x 40 requests, about a minute
    python benchmarks/bench_write_amplification.py --rounds 3 --sessions 400 --requests 40

``bench_receiver.py``'s interleaved workload (each request one turn, three spans, of each of 400 live sessions)
against the *same turns* grouped (each request 400 consecutive turns of 400 / requests sessions, a session's
turns in order), both ingested in process (decode + ``Pipeline.ingest``), rounds alternating:

- *CPU*: the process time of ``Pipeline.ingest_rows`` over every request (translation done before, not counted);
  the difference between the two shapes is what a request pays for each session it touches;
- *pages of the last request*: the store is checkpointed (``wal_checkpoint(TRUNCATE)``) before and after the
  last request, and the pages of the file that changed are counted by the B-tree they belong to (SQLite's
  ``dbstat``), against the pages its new rows fill. The floor (``bench_receiver.floor_request``: one table with
  a primary key and a session index) is measured the same way.

A B-tree whose keys are random (trace ids) or spread over every live session gets one insertion point for each
of them in every request: once it has fewer pages than that, every one of its pages is written again by every
request, so what a commit writes (WAL, then the checkpoint) grows with the store, not with the request.

Caveat: ``_otlp.TurnFactory``'s trace ids begin with the session's number, so the grouped shape's traces are also
adjacent in the trace-keyed indexes (the spans' primary key, ``spans_children``, ``spans_by_root``). Real trace
ids are random: there those indexes get a request's 400 traces all over them in either shape, as the
interleaved shape shows.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _otlp import TurnFactory
from bench_receiver import floor_connect, floor_request

from galtea_otel.decode.otlp_proto import decode_proto
from galtea_otel.pipeline import Pipeline
from galtea_otel.store import open_store


def bodies(factory: TurnFactory, order: list[tuple[int, int]], per_request: int) -> list[bytes]:
    """gzip OTLP bodies of these (session, turn) pairs, ``per_request`` turns a body, in this order."""
    out = []
    for start in range(0, len(order), per_request):
        request = None
        for session, turn in order[start:start + per_request]:
            one = factory.turns(session, turn, 1)
            if request is None:
                request = one
            else:
                request.resource_spans[0].scope_spans[0].spans.extend(one.resource_spans[0].scope_spans[0].spans)
        assert request is not None
        out.append(gzip.compress(request.SerializeToString(), 6))
    return out


def _pages(path: Path) -> tuple[bytes, dict[int, str], int]:
    """The file's bytes after a TRUNCATE checkpoint, the B-tree of each page, and the page size."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        assert busy == 0, "the checkpoint was blocked"
        owner = {int(page): str(name) for page, name in conn.execute("SELECT pageno, name FROM dbstat")}
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return path.read_bytes(), owner, size


def changed_pages(path: Path, last: Any) -> tuple[Counter[str], Counter[str], int]:
    """Run ``last()`` (one request) between two checkpoints: pages changed by B-tree, each B-tree's pages after,
    and the page size."""
    before, _, size = _pages(path)
    last()
    after, owner, size = _pages(path)
    changed: Counter[str] = Counter()
    for page in range(len(after) // size):
        if after[page * size:(page + 1) * size] != before[page * size:(page + 1) * size]:
            changed[owner.get(page + 1, "(free)")] += 1
    return changed, Counter(owner.values()), size


def ingest_cpu(pipeline: Pipeline, requests: list[bytes]) -> tuple[float, list[Any]]:
    """Translate every request, then the process time of ``ingest_rows`` over all but the last; the last's rows."""
    rows = [pipeline.translate_spans(decode_proto(gzip.decompress(body)).spans) for body in requests]
    start = time.process_time()
    for batch in rows[:-1]:
        pipeline.ingest_rows(batch)
    return time.process_time() - start, rows[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    factory = TurnFactory()
    cpu: dict[str, list[float]] = {"interleaved": [], "grouped": []}
    pages: dict[str, tuple[Counter[str], Counter[str], int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in range(args.rounds):
            first = 1_000_000 * (r + 1)
            sessions = range(first, first + args.sessions)
            shapes = {
                "interleaved": [(s, t) for t in range(args.requests) for s in sessions],
                "grouped": [(s, t) for s in sessions for t in range(args.requests)],
            }
            for name in (shapes if r % 2 == 0 else reversed(list(shapes))):
                requests = bodies(factory, shapes[name], args.sessions)
                path = folder / f"{name}{r}.db"
                store = open_store(f"sqlite:///{path}")
                try:
                    pipeline = Pipeline(store)
                    seconds, last = ingest_cpu(pipeline, requests)
                    cpu[name].append(seconds)
                    if r == 0:
                        pages[name] = changed_pages(path, lambda p=pipeline, rows=last: p.ingest_rows(rows))
                finally:
                    store.close()
            if r == 0:
                requests = bodies(factory, shapes["interleaved"], args.sessions)
                path = folder / "floor.db"
                conn = floor_connect(path, "normal")
                for body in requests[:-1]:
                    floor_request(conn, body)
                pages["floor"] = changed_pages(path, lambda c=conn, b=requests[-1]: floor_request(c, b))
                conn.close()
    spans = 3 * args.sessions
    print(f"{args.sessions} sessions x {args.requests} requests ({spans:,} spans a request); {args.rounds} round(s); "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    for name, values in cpu.items():
        print(f"ingest_rows CPU, {name:<12} {statistics.median(values):6.2f} s (min {min(values):.2f}, "
              f"max {max(values):.2f}) for {args.requests - 1} requests")
    ratio = [a / b for a, b in zip(cpu["interleaved"], cpu["grouped"], strict=True)]
    print(f"interleaved / grouped CPU  {statistics.median(ratio):.2f}x")
    for name, (changed, sizes, size) in pages.items():
        total = sum(changed.values())
        print(f"\npages the last request wrote, {name}: {total:,} ({total * size / 1e6:.1f} MB of {size}-byte pages)")
        for tree, count in changed.most_common():
            print(f"  {count:6,} of {sizes.get(tree, 0):6,}  {tree}")


if __name__ == "__main__":
    main()
