"""RELIABILITY 4: two real ``galtea-otel serve`` processes on one PostgreSQL schema, a round-robin client in
front of them."""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.store import open_store

from .conftest import pg_count, recording_sessions, sessions_of_spans
from .receiver_proc import ServeProcess


def round_robin_requests(
    spans: Sequence[ReadableSpan], receivers: int, rng: random.Random, max_batch: int
) -> list[tuple[int, list[ReadableSpan]]]:
    """All spans shuffled, cut into requests of 1..max_batch spans, the n-th request to receiver n % receivers:
    the spans of every session (and of most traces) end up split at random between the receivers."""
    shuffled = list(spans)
    rng.shuffle(shuffled)
    requests: list[tuple[int, list[ReadableSpan]]] = []
    start = 0
    while start < len(shuffled):
        size = rng.randint(1, max_batch)
        requests.append((len(requests) % receivers, shuffled[start : start + size]))
        start += size
    return requests


def check_two_receivers(store_url: str, schema: str, sessions: int, *, clients: int = 8, seed: int = 4) -> None:
    """Send ``sessions`` x 20 spans through two receiver processes; assert every session and span is stored
    exactly once, every session whole (8 turns), and that no request was answered 5xx."""
    spans = sessions_of_spans(sessions, 20, prefix=f"rr{seed}")
    rng = random.Random(seed)
    work: queue.Queue[tuple[int, list[ReadableSpan]] | None] = queue.Queue()
    for item in round_robin_requests(spans, 2, rng, max_batch=60):
        work.put(item)
    statuses, make_session = recording_sessions()
    failures: list[str] = []
    with ServeProcess(store_url) as first, ServeProcess(store_url) as second:
        urls = (first.url, second.url)

        def client(n: int) -> None:
            exporters = [
                OTLPSpanExporter(
                    endpoint=url,
                    timeout=60,
                    session=make_session(),
                    compression=Compression.Gzip if n % 2 else Compression.NoCompression,
                )
                for url in urls
            ]
            try:
                while True:
                    item = work.get()
                    if item is None:
                        return
                    target, batch = item
                    if exporters[target].export(batch) is not SpanExportResult.SUCCESS:
                        failures.append(f"a batch of {len(batch)} spans to receiver {target} failed")
            finally:
                for exporter in exporters:
                    exporter.shutdown()  # type: ignore[no-untyped-call]

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        logs = first.log + second.log
    assert failures == []
    assert sorted(statuses) == [200], f"statuses seen by the clients: {dict(statuses)}\n{logs[-4000:]}"
    assert pg_count(schema, "spans") == sessions * 20
    store = open_store(store_url)
    try:
        records = store.list_sessions(limit=sessions + 10)
    finally:
        store.close()
    assert len(records) == sessions
    assert len({r.custom_id for r in records}) == sessions
    assert [r.custom_id for r in records if r.turn_count != 8] == []
