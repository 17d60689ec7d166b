"""The session listing at 100,000 sessions: first page, deep page and filtered pages, SQLite and PostgreSQL.

    python benchmarks/bench_ui.py [--sessions 100000] [--postgres postgresql://postgres@127.0.0.1:5432/test]

The store is filled through its own write primitives (``transaction().upsert_sessions`` and ``insert_spans``:
one LLM span per session, so that the text search has turns to read), then every listing is timed as
``galtea-otel ui`` runs it (``Store.list_sessions(filter=..., after=..., limit=50)``), median of 15 runs:

- *first page*: the 50 newest; *deep page*: 50 sessions after a cursor 90% of the way down;
- *status=FAILED*, *user=u7* (indexed, 5% and 0.1% of the sessions), deep too;
- *model=m3*, *q=needle* (checked row by row over the bounded 5,000-session window; "needle" is in 1%).

Also the UI's own answer time (``GET /`` and ``GET /?q=needle`` through ``galtea_otel.ui.server``, in process).

On PostgreSQL the text search reads the pg_trgm indexes the store creates (``postgres.TRIGRAM_INDEXES``); the
same run then drops them, reopens the store and times the ``q`` rows again with the plain query, side by side.
``galtea-otel ui``'s start is ``bench_ui_start.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from galtea_otel.store import Store, open_store  # noqa: E402
from galtea_otel.store.filters import Cursor, make_filter  # noqa: E402
from galtea_otel.translate.row import KIND_LLM, SpanRow  # noqa: E402

BASE_NS = 1_780_000_000 * 10**9
RUNS = 15


def fill(store: Store, n: int) -> None:
    batch = 5000
    for start in range(0, n, batch):
        summaries, rows = [], []
        for i in range(start, min(n, start + batch)):
            started = BASE_NS + i * 10**9
            status = "FAILED" if i % 20 == 3 else "PENDING" if i % 20 == 7 else "COMPLETED"
            text = f"question {i}" + (" with a needle" if i % 100 == 5 else "")
            summaries.append({
                "custom_id": f"bench-{i:06d}", "version": f"v{i % 3}", "status": status,
                "error": "boom" if status == "FAILED" else None, "test_case_id": None, "context": None,
                "metadata": {"channel": "chat" if i % 2 else "email"}, "started_ns": started,
                "ended_ns": None if status == "PENDING" else started + 5 * 10**9, "last_activity_ns": started,
                "turn_count": 1 + i % 4, "input_tokens": 100, "output_tokens": 50, "total_tokens": 150,
                "cost": 0.001 * (i % 10), "latency_ms": 800.0, "assembly": "{}", "user_id": f"u{i % 1000}",
                "first_input": text, "last_output": f"answer {i}", "model": f"m{i % 5}", "cache_read_tokens": None,
            })
            rows.append(SpanRow(trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id=None, name="chat",
                                kind=KIND_LLM, start_ns=started, end_ns=started + 10**9, status=0,
                                own_custom_id=f"bench-{i:06d}", own_version=f"v{i % 3}",
                                custom_id=f"bench-{i:06d}", version=f"v{i % 3}", input=text,
                                output=f"answer {i}", model=f"m{i % 5}", received_ns=started))
        with store.transaction() as tx:
            tx.insert_spans(rows)
            tx.upsert_sessions(summaries)


def median_ms(call: Callable[[], Any]) -> float:
    call()  # warm
    times = []
    for _ in range(RUNS):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times)


def bench(store: Store, n: int, only: tuple[str, ...] = ()) -> dict[str, float]:
    deep_i = n - int(n * 0.9)  # listing order is newest first: index 90% down
    deep = Cursor(BASE_NS + deep_i * 10**9, f"bench-{deep_i:06d}", f"v{deep_i % 3}")
    cases: dict[str, tuple[Any, Cursor | None]] = {
        "first page": (None, None),
        "deep page (90%)": (None, deep),
        "status=FAILED": (make_filter(status="FAILED"), None),
        "status=FAILED, deep": (make_filter(status="FAILED"), deep),
        "user=u7": (make_filter(user="u7"), None),
        "version=v1, deep": (make_filter(version="v1"), deep),
        "model=m3 (scan)": (make_filter(model="m3"), None),
        "q=needle (scan)": (make_filter(q="needle"), None),
        "q=needle, deep (scan)": (make_filter(q="needle"), deep),
    }
    out = {}
    if only:
        cases = {k: v for k, v in cases.items() if k in only}
    for name, (flt, after) in cases.items():
        page = store.list_sessions(filter=flt, after=after, limit=50)
        assert page, name
        out[name] = median_ms(lambda f=flt, a=after: store.list_sessions(filter=f, after=a, limit=50))
    from galtea_otel.ui.server import UIApp

    app = UIApp(store)
    headers = {"Host": "127.0.0.1:7007"}
    for name, target in (("UI GET /", "/"), ("UI GET /?q=needle", "/?q=needle")):
        if only and name not in only:
            continue
        assert app.handle("GET", target, headers).status == 200
        out[name] = median_ms(lambda t=target: app.handle("GET", t, headers))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL database (a schema of its own is made and dropped); 'off' to skip")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        if args.no_sqlite:
            folder = ""
        if folder:
            store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
            begin = time.perf_counter()
            fill(store, args.sessions)
            print(f"sqlite: filled {args.sessions:,} sessions in {time.perf_counter() - begin:.1f} s",
                  file=sys.stderr)
            results["SQLite"] = bench(store, args.sessions)
            store.close()
    if args.postgres != "off":
        import psycopg

        schema = f"bench_ui_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in args.postgres else "?"
            store = open_store(f"{args.postgres}{sep}options=-csearch_path%3D{schema}")
            begin = time.perf_counter()
            fill(store, args.sessions)
            print(f"postgres: filled in {time.perf_counter() - begin:.1f} s", file=sys.stderr)
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f"ANALYZE {schema}.sessions")
                admin.execute(f"ANALYZE {schema}.spans")
            from galtea_otel.store.postgres import TRIGRAM_INDEXES

            trigram = getattr(store, "_dialect", None) is not None and store._dialect.text_index  # type: ignore[attr-defined]
            label = "PostgreSQL" + (" (pg_trgm)" if trigram else "")
            results[label] = bench(store, args.sessions)
            store.close()
            if trigram:  # the same store, the same run, without the indexes: the plain query
                with psycopg.connect(args.postgres, autocommit=True) as admin:
                    for name, _ in TRIGRAM_INDEXES:
                        admin.execute(f"DROP INDEX {schema}.{name}")
                store = open_store(f"{args.postgres}{sep}options=-csearch_path%3D{schema}")
                searches = tuple(k for k in results[label] if "q=" in k)
                results["PostgreSQL, no index"] = bench(store, args.sessions, only=searches)
                store.close()
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
    names = list(next(iter(results.values())))
    print(f"| listing, {args.sessions:,} sessions, 50 per page | " + " | ".join(f"{k} (ms)" for k in results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{results[k][name]:.2f}" if name in results[k] else "" for k in results)
              + " |")
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()
