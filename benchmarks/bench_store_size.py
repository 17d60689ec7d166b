"""Does ingest slow down as the store fills? The receiver's interleaved workload, again and again, into one store
that keeps growing, against the plain floor growing the same way, side by side.

    python benchmarks/bench_store_size.py                   # 12 generations of 24,000 spans, about a minute
    python benchmarks/bench_store_size.py --generations 40  # about a million spans

``bench_receiver.py`` measures a fresh store. A receiver that has run for a while writes into tables and indexes
far larger than a request: with random trace ids and 400 sessions a request, every request touches pages all
over them. Each *generation* here is ``bench_receiver.py``'s interleaved workload for new sessions (400 live
sessions x 20 requests, each request one turn of every session: 1,200 spans), ingested in process:

- *floor*: gunzip + protobuf decode + a walk of each span's attributes into a row + one ``executemany`` a request
  into a SQLite table with a primary key and a session index (``bench_receiver.floor_request``, into a file
  that keeps its rows from one generation to the next);
- *galtea*: gunzip + decode + ``Pipeline.ingest`` into a SQLite store (the receiver minus HTTP) that keeps them.

Generations alternate (floor, galtea); printed for each: spans already stored, both rates, their ratio and both
file sizes. The question is whether the ratio holds as the stores grow (synchronous=NORMAL, the default).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _otlp import TurnFactory
from bench_receiver import floor_connect, floor_request, interleaved_bodies

from galtea_otel.decode.otlp_proto import decode_proto
from galtea_otel.pipeline import Pipeline
from galtea_otel.store import open_store


def floor(conn: sqlite3.Connection, bodies: list[bytes]) -> tuple[int, float]:
    spans, start = 0, time.perf_counter()
    for body in bodies:
        spans += floor_request(conn, body)
    return spans, time.perf_counter() - start


def galtea(pipeline: Pipeline, bodies: list[bytes]) -> tuple[int, float]:
    spans, start = 0, time.perf_counter()
    for body in bodies:
        decoded = decode_proto(gzip.decompress(body)).spans
        pipeline.ingest(decoded)
        spans += len(decoded)
    return spans, time.perf_counter() - start


def megabytes(path: Path) -> float:
    wal = path.with_name(path.name + "-wal")
    return (path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=12)
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    if args.generations < 2:
        parser.error("--generations: at least 2 (the first half is compared with the second)")
    print(f"{args.generations} generations of {args.sessions} live sessions x {args.requests} requests (each "
          f"request one turn of every session), in process; SQLite {sqlite3.sqlite_version}, synchronous=NORMAL; "
          f"Python {platform.python_version()}, {os.cpu_count()} cores", flush=True)
    factory = TurnFactory()
    with tempfile.TemporaryDirectory() as tmp:
        floor_path, store_path = Path(tmp) / "floor.db", Path(tmp) / "store.db"
        floor_conn = floor_connect(floor_path, "NORMAL")
        store = open_store(f"sqlite:///{store_path}")
        pipeline = Pipeline(store)
        stored = 0
        ratios = []
        print(f"{'spans stored':>13} {'floor spans/s':>14} {'galtea spans/s':>15} {'ratio':>6} "
              f"{'floor MB':>9} {'store MB':>9}")
        for generation in range(args.generations):
            bodies = interleaved_bodies(factory, args.sessions, args.requests, 1000 * (generation + 1))
            floor_spans, floor_seconds = floor(floor_conn, bodies)
            spans, seconds = galtea(pipeline, bodies)
            assert spans == floor_spans
            ratio = (spans / seconds) / (floor_spans / floor_seconds)
            ratios.append(ratio)
            print(f"{stored:>13,} {floor_spans / floor_seconds:>14,.0f} {spans / seconds:>15,.0f} {ratio:>5.2f}x "
                  f"{megabytes(floor_path):>9.0f} {megabytes(store_path):>9.0f}", flush=True)
            stored += spans
        got = store.read_sql("SELECT count(*) FROM spans")[0][0]
        sessions = store.read_sql("SELECT count(*) FROM sessions")[0][0]
        turns = store.read_sql("SELECT count(*) FROM turns")[0][0]
        if (got, sessions, turns) != (stored, args.generations * args.sessions, stored // 3):
            raise SystemExit(f"stored {got} spans, {sessions} sessions, {turns} turns of {stored} spans sent")
        print(f"stored, queried at the end: {got:,} spans, {sessions:,} sessions, {turns:,} turns")
        half = len(ratios) // 2
        print(f"ratio galtea / floor: first {half} generations {min(ratios[:half]):.2f}-{max(ratios[:half]):.2f}x, "
              f"last {len(ratios) - half} {min(ratios[half:]):.2f}-{max(ratios[half:]):.2f}x")
        store.close()
        floor_conn.close()


if __name__ == "__main__":
    main()
