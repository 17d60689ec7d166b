"""Group commit (issue 9): requests that wait for the store together are stored in one transaction, and each is
still answered for itself, only after that commit.

Real receivers on 127.0.0.1 (OTLP/HTTP and OTLP/gRPC), real OTLP exporters in several threads, real SQLite files
(and PostgreSQL). To make requests wait together without timing, another connection holds the store's write lock
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL a lock on the spans table) while the writer's transaction waits for it,
until the receiver's writer counts the expected requests queued; then the lock is let go.
"""

from __future__ import annotations

import contextlib
import http.client
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from galtea_otel import attributes as A
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.serve.writer import GroupCommitter
from galtea_otel.store import open_store
from tests.reliability.stored import drop_trigger, refuse_inserts, store_records

from .conftest import fresh_pg_schema, sessions_of_spans

LOCAL = Address("127.0.0.1", 0)
CLIENTS = 8  # 4 OTLP/HTTP and 4 OTLP/gRPC exporters at once


@contextlib.contextmanager
def receiver_on(store_url: str, **changes: Any) -> Iterator[Receiver]:
    """A receiver that opens its own store, as ``galtea-otel serve`` does, on free loopback ports."""
    options = ServeOptions(store_url=store_url, http=LOCAL, grpc=LOCAL, max_inflight=CLIENTS,
                           sweep_interval=3600.0, shutdown_grace=10.0, **changes)
    with start_in_thread(options) as receiver:
        yield receiver


def writer_of(receiver: Receiver) -> GroupCommitter:
    assert receiver.writer is not None, "a real Pipeline is stored through the group commit writer"
    return receiver.writer


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a count to be reached (polling; the assertion is on the count, never on the time taken)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


class SqliteLock:
    """Another connection holding the SQLite file's write lock (``BEGIN IMMEDIATE``) until ``release``."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.close()


class PostgresLock:
    """Another connection holding a lock on the spans table that blocks every insert into it, until ``release``."""

    def __init__(self, store_url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(store_url)
        self.conn.execute("LOCK TABLE spans IN SHARE ROW EXCLUSIVE MODE")

    def release(self) -> None:
        self.conn.commit()
        self.conn.close()


def sqlite_path(store_url: str) -> Path:
    return Path(store_url.removeprefix("sqlite:///"))


def exporter(receiver: Receiver, protocol: str) -> SpanExporter:
    if protocol == "http":
        assert receiver.http_address is not None
        return HttpExporter(endpoint=f"http://{receiver.http_address}/v1/traces", timeout=60)
    return GrpcExporter(endpoint=str(receiver.grpc_address), insecure=True, timeout=60)


def export_concurrently(receiver: Receiver, chunks: Sequence[Sequence[ReadableSpan]],
                        started: Callable[[], None] = lambda: None) -> list[SpanExportResult]:
    """``CLIENTS`` threads, half with the real OTLP/HTTP exporter, half with the OTLP/gRPC one; thread t exports
    chunks t, t + CLIENTS, ... one after the other. ``started`` runs once every thread is exporting."""
    results: list[SpanExportResult] = []
    lock = threading.Lock()

    def client(t: int) -> None:
        sender = exporter(receiver, "http" if t % 2 else "grpc")
        try:
            for chunk in chunks[t::CLIENTS]:
                result = sender.export(chunk)
                with lock:
                    results.append(result)
        finally:
            sender.shutdown()

    threads = [threading.Thread(target=client, args=(t,)) for t in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        started()
    finally:
        for thread in threads:
            thread.join()
    return results


def stored_rows(store_url: str) -> list[tuple[Any, ...]]:
    """Every stored span row but the time it was received (queried from the SQLite file), in a stable order."""
    with contextlib.closing(sqlite3.connect(sqlite_path(store_url))) as conn:
        cursor = conn.execute("SELECT * FROM spans ORDER BY trace_id, span_id")
        keep = [i for i, column in enumerate(cursor.description) if column[0] != "received_ns"]
        return [tuple(row[i] for i in keep) for row in cursor.fetchall()]


def records(store_url: str) -> dict[str, Any]:
    """Every session's summary and full record (turns, spans, aggregates), as JSON values."""
    store = open_store(store_url)
    try:
        return store_records(store)
    finally:
        store.close()


def interleaved(spans: Sequence[ReadableSpan], chunks: int) -> list[list[ReadableSpan]]:
    """``chunks`` requests, each with spans of many sessions (so that requests stored together share sessions)."""
    return [list(spans[c::chunks]) for c in range(chunks)]


def export_merged(receiver: Receiver, holder: Any, chunks: Sequence[Sequence[ReadableSpan]]
                  ) -> tuple[list[SpanExportResult], Any]:
    """``export_concurrently`` with every client's first request waiting together: the one the writer took
    first in its transaction (waiting for ``holder``'s lock), the others queued behind it; then the lock is let
    go. Returns the export results and the writer's stats."""
    writer = writer_of(receiver)

    def merge_the_first_requests() -> None:
        try:
            until(lambda: writer.waiting == CLIENTS, "every client's first request waiting")
        finally:
            holder.release()

    results = export_concurrently(receiver, chunks, merge_the_first_requests)
    return results, writer.stats.copy()


def recorded(build: Callable[[Tracer], None]) -> list[ReadableSpan]:
    """The real SDK spans ``build`` makes with a tracer of its own provider, in the order they ended."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "group-commit"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("tests.group_commit"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def named_spans(names: Sequence[str], prefix: str) -> list[ReadableSpan]:
    """One real SDK span per name, each its own session's."""
    def build(tracer: Tracer) -> None:
        for n, name in enumerate(names):
            with tracer.start_as_current_span(name, attributes={A.SESSION_CUSTOM_ID: f"{prefix}-{n}",
                                                                A.SESSION_VERSION: "1", A.SPAN_TYPE: "SPAN"}):
                pass

    return recorded(build)


def parent_and_unkeyed_child(prefix: str) -> list[ReadableSpan]:
    """A keyed span and a child that states no key (it gets its parent's by resolution): 2 real SDK spans."""
    def build(tracer: Tracer) -> None:
        keyed = {A.SESSION_CUSTOM_ID: prefix, A.SESSION_VERSION: "1", A.SPAN_TYPE: "SPAN"}
        with tracer.start_as_current_span("parent", attributes=keyed), \
                tracer.start_as_current_span(f"child of {prefix}", attributes={A.SPAN_TYPE: "SPAN"}):
            pass

    return recorded(build)


# --------------------------------------------------------------------------------------------------- tests


def test_concurrent_exporters_store_every_acknowledged_span_as_if_sent_one_by_one(tmp_path: Path) -> None:
    spans = sessions_of_spans(24, 12, prefix="gc")  # 288 spans, 24 sessions
    chunks = interleaved(spans, 48)  # 48 requests of 6 spans, each touching 6 sessions
    url = f"sqlite:///{tmp_path / 'together.db'}"
    with receiver_on(url) as receiver:
        results, stats = export_merged(receiver, SqliteLock(sqlite_path(url)), chunks)
    assert results == [SpanExportResult.SUCCESS] * len(chunks)
    # Every acknowledged span is stored, and every request was stored by the writer: fewer commits than requests.
    assert len(stored_rows(url)) == len(spans)
    assert stats["requests"] == len(chunks) and stats["spans"] == len(spans) and stats["failed"] == 0
    # The clients' first requests were stored by 2 transactions at most (the one that waited, the one after it).
    assert stats["largest_group"] >= CLIENTS // 2
    assert stats["commits"] <= stats["requests"] - (CLIENTS - 2)

    # The same spans sent one by one, one span a request: the same rows and the same records.
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    with receiver_on(alone) as receiver:
        sender = exporter(receiver, "http")
        for span in spans:
            assert sender.export([span]) is SpanExportResult.SUCCESS
        sender.shutdown()
        assert writer_of(receiver).stats["commits"] == len(spans)
    assert stored_rows(url) == stored_rows(alone)
    together = records(url)
    assert len(together) == 24 and {s["turn_count"] for s, _ in together.values()} == {4}
    assert together == records(alone)


def post_http(receiver: Receiver, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """One OTLP/HTTP request with a plain client (no retries)."""
    assert receiver.http_address is not None
    conn = http.client.HTTPConnection(receiver.http_address.host, receiver.http_address.port, timeout=120)
    try:
        conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def post_grpc(receiver: Receiver, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """One OTLP/gRPC call with a plain stub (no retries), answered as (HTTP-like status, metadata, response)."""
    with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
        stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            response = stub.Export(ExportTraceServiceRequest.FromString(body), timeout=120)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            trailers = {k: str(v) for k, v in exc.trailing_metadata() or ()}  # type: ignore[attr-defined]
            return (503 if code is grpc.StatusCode.UNAVAILABLE else 500), trailers, b""
        return 200, {}, response.SerializeToString()


def send_together(receiver: Receiver, holder: Any, bodies: Sequence[bytes]) -> list[tuple[int, dict[str, str], bytes]]:
    """A first request stored alone (its transaction waits for ``holder``'s lock), then ``bodies`` at once (half
    over OTLP/HTTP, half over OTLP/gRPC), queued together behind it; then the lock is let go. Answers in order:
    the first request's, then each body's."""
    writer = writer_of(receiver)
    answers: list[Any] = [None] * (len(bodies) + 1)
    first = encode_spans(named_spans(["first"], f"first-{id(bodies)}")).SerializeToString()

    def send(i: int, body: bytes) -> None:
        answers[i] = (post_http if i % 2 else post_grpc)(receiver, body)

    threads = [threading.Thread(target=send, args=(0, first))]
    try:
        threads[0].start()
        until(lambda: writer.busy and writer.queued == 0, "the first request in a transaction of its own")
        threads += [threading.Thread(target=send, args=(i, body)) for i, body in enumerate(bodies, 1)]
        for thread in threads[1:]:
            thread.start()
        until(lambda: writer.queued == len(bodies), "every request queued behind the first")
    finally:
        holder.release()
        for thread in threads:
            thread.join()
    return answers


def test_a_failing_merged_transaction_stores_each_request_alone_and_fails_only_the_bad_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'poison.db'}"
    # Six requests of 4 spans each (two keyed spans, a keyed parent and its unkeyed child); request 4 also holds
    # the parent (keyed "x") of an unkeyed child in request 0, and the store refuses session "x" (a real SQLite
    # trigger): the group's transaction fails after resolution gave the child its parent's key.
    requests = [[*named_spans([f"span {r}.{s}" for s in range(2)], f"p{r}"), *parent_and_unkeyed_child(f"c{r}")]
                for r in range(6)]
    child, parent = parent_and_unkeyed_child("x")
    requests[0].append(child)
    requests[4].append(parent)
    bodies = [encode_spans(spans).SerializeToString() for spans in requests]
    with receiver_on(url) as receiver:
        refuse_inserts(sqlite_path(url), "poison", "sessions", "NEW.custom_id = 'x'", "poisoned session")
        answers = send_together(receiver, SqliteLock(sqlite_path(url)), bodies)
        stats = writer_of(receiver).stats.copy()
        assert answers[0][0] == 200
        # The six were one transaction; it failed, so each was stored alone: the five good ones are stored and
        # acknowledged, the poisoned one (request 4) alone is told to retry, and none of its spans is stored.
        assert stats["failed"] == 2 and stats["stored_alone"] == 5 and stats["failed_requests"] == 1
        for i, (status, headers, _) in enumerate(answers[1:]):
            if i == 4:
                assert status == 503, (i, status)
                assert ("retry-after" in headers) if (i + 1) % 2 else ("google.rpc.retryinfo-bin" in headers)
            else:
                assert status == 200, (i, status)
        names = sorted(row[3] for row in stored_rows(url))  # name
        assert names == sorted(["first", *(s.name for r, spans in enumerate(requests) if r != 4 for s in spans)])
        # Each stored alone as translated, not with the keys the failed transaction gave its rows: the child of
        # the poisoned request's parent is held (no key), as by a receiver that never got that parent, not
        # stored under "x" (which would have failed request 0 too); the rows are those of a receiver that got
        # the good requests one by one.
        with contextlib.closing(sqlite3.connect(sqlite_path(url))) as conn:
            children = conn.execute("SELECT name, custom_id FROM spans WHERE name LIKE 'child of %'").fetchall()
        assert sorted(children) == [*((f"child of c{r}", f"c{r}") for r in (0, 1, 2, 3, 5)), ("child of x", None)]
        grouped = [row for row in stored_rows(url) if row[3] != "first"]
        alone_url = f"sqlite:///{tmp_path / 'alone.db'}"
        with receiver_on(alone_url) as alone:
            for r, body in enumerate(bodies):
                if r != 4:
                    assert post_http(alone, body)[0] == 200
        assert grouped == stored_rows(alone_url)
        # The store works again: the client's retry is stored, and the held child joins session "x".
        drop_trigger(sqlite_path(url), "poison")
        assert post_http(receiver, bodies[4])[0] == 200
        with contextlib.closing(sqlite3.connect(sqlite_path(url))) as conn:
            assert conn.execute("SELECT custom_id FROM spans WHERE name = 'child of x'").fetchall() == [("x",)]
    assert len(stored_rows(url)) == 1 + 4 * len(bodies) + 2


def test_a_store_that_keeps_failing_fails_the_rest_of_a_group_without_trying_each(tmp_path: Path) -> None:
    """When the requests of a failed group, stored alone, fail twice in a row, the store itself is failing: the
    rest are answered as unavailable at once (no attempt each), and nothing of any is stored."""
    url = f"sqlite:///{tmp_path / 'down.db'}"
    requests = [named_spans([f"span {r}.{s}" for s in range(3)], f"d{r}") for r in range(6)]
    bodies = [encode_spans(spans).SerializeToString() for spans in requests]
    with receiver_on(url) as receiver:
        refuse_inserts(sqlite_path(url), "down", "spans", "NEW.name LIKE 'span %'", "store down")
        answers = send_together(receiver, SqliteLock(sqlite_path(url)), bodies)
        stats = writer_of(receiver).stats.copy()
        assert [a[0] for a in answers] == [200, *[503] * len(bodies)]
        # the group's transaction, then two requests alone: 3 attempts, not 7
        assert stats["failed"] == 3 and stats["failed_requests"] == len(bodies) and stats["stored_alone"] == 0
        assert [row[3] for row in stored_rows(url)] == ["first"]


def test_requests_stored_together_each_get_their_own_partial_success(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'partial.db'}"
    bodies, valid = [], 0
    for r in range(6):
        request = encode_spans(named_spans([f"span {r}.{s}" for s in range(4)], f"m{r}"))
        spans = request.resource_spans[0].scope_spans[0].spans
        for s in range(r % 4):  # request r: r % 4 of its 4 spans invalid (a span id of the wrong length)
            spans[s].span_id = b"\x01\x02"
        valid += 4 - r % 4
        bodies.append(request.SerializeToString())
    with receiver_on(url) as receiver:
        answers = send_together(receiver, SqliteLock(sqlite_path(url)), bodies)
        stats = writer_of(receiver).stats.copy()
    assert stats["commits"] == 2 and stats["requests"] == 1 + len(bodies)  # the first alone, then the six
    for r, (status, _, body) in enumerate(answers[1:]):
        assert status == 200
        response = ExportTraceServiceResponse.FromString(body)
        assert response.partial_success.rejected_spans == r % 4, r
        assert ("span_id" in response.partial_success.error_message) == bool(r % 4)
    assert len(stored_rows(url)) == 1 + valid


@pytest.mark.parametrize(("limits", "groups"), [
    ({"group_max_spans": 7}, [1, 2, 2, 2]),  # 3 spans a request: 2 requests fit in 7 spans, 3 do not
    ({"group_max_bytes": 1}, [1] * 7),  # every request is over the limit alone: one transaction each
    ({}, [1, 6]),
])
def test_a_group_is_cut_at_its_span_and_byte_limits(tmp_path: Path, limits: dict[str, int],
                                                     groups: list[int]) -> None:
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    bodies = [encode_spans(named_spans([f"span {r}.{s}" for s in range(3)], f"l{r}")).SerializeToString()
              for r in range(6)]
    with receiver_on(url, **limits) as receiver:
        answers = send_together(receiver, SqliteLock(sqlite_path(url)), bodies)
        stats = writer_of(receiver).stats.copy()
    assert [answer[0] for answer in answers] == [200] * 7
    assert stats["commits"] == len(groups) and stats["largest_group"] == max(groups)
    assert len(stored_rows(url)) == 1 + 3 * len(bodies)


def test_postgres_store_through_the_writer(tmp_path: Path) -> None:
    spans = sessions_of_spans(16, 12, prefix="gcpg")
    chunks = interleaved(spans, 32)
    with fresh_pg_schema() as (url, _schema):
        with receiver_on(url) as receiver:
            results, stats = export_merged(receiver, PostgresLock(url), chunks)
        assert results == [SpanExportResult.SUCCESS] * len(chunks)
        assert stats["requests"] == len(chunks) and stats["commits"] <= stats["requests"] - (CLIENTS - 2)
        pg_records = records(url)
    # The same records as the spans sent one by one into SQLite.
    alone = f"sqlite:///{tmp_path / 'alone.db'}"
    with receiver_on(alone) as receiver:
        sender = exporter(receiver, "grpc")
        for span in spans:
            assert sender.export([span]) is SpanExportResult.SUCCESS
        sender.shutdown()
    assert len(pg_records) == 16 and pg_records == records(alone)
