"""RELIABILITY 5: a stalled store gets 503 + Retry-After, bounded memory, and 100% delivery afterwards.

The receiver is a real ``galtea-otel serve`` process over a SQLite file; the stall is real too: the test holds
the database's write lock (``BEGIN IMMEDIATE`` on a connection of its own) for a few seconds, so the receiver's
ingests block inside SQLite (busy timeout 30 s) exactly as they would behind a slow disk or a long writer.

The memory bound, from the design (``ServeOptions``, ``galtea_otel.serve.http``): body bytes held at once
(being read, waiting for an ingest slot, being processed) are at most ``max_inflight x max_body_bytes`` (16 MiB
here); a body that finds no room within ``queue_timeout`` is answered 503 and the rest of it is read and
discarded; on top of that each of the ``max_inflight`` requests being ingested holds its inflated body and
decoded spans. Here the test allows 100 MiB, while 24 clients keep 8 MiB bodies coming (192 MiB at once, which a
receiver that buffered every body would hold) and offer about 0.5 GiB in all.
"""

from __future__ import annotations

import http.client
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from .conftest import recording_sessions, sessions_of_spans
from .receiver_proc import ServeProcess

STALL_SECONDS = 6.0
EXPORTERS = 16
FLOODERS = 24
FLOOD_BODY = os.urandom(8 << 20)  # 8 MiB: never read while the store is stalled
MAX_BODY = 8 << 20
RSS_BOUND_KIB = 100 * 1024
WARM_SPANS = 3 * 40


def _span_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])


def _flood(port: int, stop: threading.Event, answers: Counter[str], lock: threading.Lock) -> None:
    """POST 8 MiB bodies, one after the other, until ``stop``; count (status, Retry-After) answers."""
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("POST", "/v1/traces", FLOOD_BODY, {"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
            key = f"{response.status} retry-after={response.getheader('Retry-After')}"
        except OSError as exc:  # the receiver answered 503 before reading the body and closed: also fine
            key = f"connection error {type(exc).__name__}"
        finally:
            conn.close()
        with lock:
            answers[key] += 1


def test_stalled_store_gets_503_bounded_memory_and_full_delivery(tmp_path: Path) -> None:
    """RELIABILITY 5: store stalled 6 s (SQLite write lock held by another connection) while 16 real OTLP/HTTP
    exporters send 16 x 100 spans and 24 clients flood 8 MiB bodies: the receiver answers 503 with
    Retry-After, its resident memory rises by less than 100 MiB (bound: see the module docstring), and once
    the stall ends the exporters' own retries deliver 100% (1,600 spans, each stored once)."""
    db = tmp_path / "stalled.db"
    batches = [sessions_of_spans(5, 20, prefix=f"bp{i}") for i in range(EXPORTERS)]
    statuses, make_session = recording_sessions()
    flood_answers: Counter[str] = Counter()
    flood_lock = threading.Lock()
    # inline: the requests wait for the stalled store itself (deferred ones, the default on SQLite, wait for the
    # inbox's limit instead: tests/reliability/test_deferred_assembly.py)
    with ServeProcess(f"sqlite:///{db}", "--assemble", "inline", "--max-inflight", "2", "--max-body-bytes",
                      str(MAX_BODY)) as receiver:
        warm = OTLPSpanExporter(endpoint=receiver.url, timeout=30)
        for _ in range(3):  # first requests allocate what any receiver keeps (imports, caches, pools)
            assert warm.export(sessions_of_spans(2, 20, prefix="warm")) is SpanExportResult.SUCCESS
        warm.shutdown()  # type: ignore[no-untyped-call]
        baseline = receiver.settled_rss_kib()
        receiver.reset_peak()

        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the stall starts: no other writer gets in
        results: list[SpanExportResult] = []

        def export(batch: list[object]) -> None:
            exporter = OTLPSpanExporter(endpoint=receiver.url, timeout=60, session=make_session())
            results.append(exporter.export(batch))  # type: ignore[arg-type]
            exporter.shutdown()  # type: ignore[no-untyped-call]

        stop_flood = threading.Event()
        threads = [threading.Thread(target=export, args=(batch,)) for batch in batches]
        flooders = [
            threading.Thread(target=_flood, args=(receiver.port, stop_flood, flood_answers, flood_lock))
            for _ in range(FLOODERS)
        ]
        for thread in threads + flooders:
            thread.start()
        peak_rss = baseline
        deadline = time.monotonic() + STALL_SECONDS
        while time.monotonic() < deadline:
            peak_rss = max(peak_rss, receiver.status_kib("VmRSS"))
            time.sleep(0.05)
        stop_flood.set()
        for thread in flooders:
            thread.join()
        peak_rss = max(peak_rss, receiver.status_kib("VmHWM"))
        stalled_spans = _span_count(db)
        holder.execute("ROLLBACK")  # the stall ends
        holder.close()
        for thread in threads:
            thread.join()
        log = receiver.log

    rise_mib = (peak_rss - baseline) / 1024
    print(f"baseline {baseline // 1024} MiB, peak rise {rise_mib:.1f} MiB, HTTP statuses {dict(statuses)}, "
          f"flood {dict(flood_answers)}")
    assert peak_rss - baseline < RSS_BOUND_KIB, f"resident memory rose by {rise_mib:.0f} MiB during the stall"
    assert stalled_spans == WARM_SPANS  # only the warm-up: nothing was acknowledged while the store was stalled
    assert results == [SpanExportResult.SUCCESS] * EXPORTERS  # the exporters' retries delivered everything
    assert _span_count(db) == WARM_SPANS + EXPORTERS * 100
    assert statuses[503] >= EXPORTERS - 2, dict(statuses)  # all but the 2 that got a slot were told to retry
    assert set(statuses) == {200, 503}, dict(statuses)
    flooded_503 = flood_answers["503 retry-after=1"]
    offered_mib = 8 * sum(flood_answers.values())
    assert flooded_503 >= FLOODERS and offered_mib > 3 * RSS_BOUND_KIB / 1024, dict(flood_answers)
    assert set(flood_answers) <= {"503 retry-after=1", "400 retry-after=None"}, dict(flood_answers)
    assert "Traceback" not in log

