"""RELIABILITY 2 and 3 over real HTTP: a client that re-sends (after a timeout, a crash, a restart) and spans
that arrive in any order, one per request, change nothing in the records.

2. The same 500-span request sent 3 times: 500 rows, identical aggregates.
3. A 50-span session delivered in reverse order, one span per request, the session key only on its root:
   records equal to a single in-order delivery.
"""

from __future__ import annotations

import contextlib
import http.client
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from galtea_otel import attributes as A
from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.store import open_store
from tests.reliability.stored import store_records


def sessions(count: int, prefix: str) -> list[ReadableSpan]:
    """``count`` sessions of 50 spans, one trace each: only the root (a plain request span, so that each LLM call
    is a turn of its own) carries the session key;
    under it a retriever span and 24 LLM calls (the turns), each with a tool span. Children end before their
    parents, so the SDK's order is children first, the keyed root last."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "resend", "service.version": "7"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.reliability")
    for s in range(count):
        key = {A.SESSION_CUSTOM_ID: f"{prefix}-{s:02d}", A.SESSION_VERSION: "1"}
        with tracer.start_as_current_span("request", attributes={**key, A.SPAN_TYPE: "SPAN"}):
            with tracer.start_as_current_span("retrieve", attributes={A.SPAN_TYPE: "RETRIEVER"}):
                pass
            for turn in range(24):
                attributes: dict[str, Any] = {
                    A.SPAN_TYPE: A.TYPE_GENERATION, A.GEN_AI_REQUEST_MODEL: "gpt-4o", A.GEN_AI_INPUT_TOKENS: 10 + turn,
                    A.GEN_AI_OUTPUT_TOKENS: 5, A.INFERENCE_COST: 0.001, A.SPAN_INPUT: f"q{turn}",
                    A.SPAN_OUTPUT: f"a{turn}",
                }
                with tracer.start_as_current_span("chat", kind=SpanKind.CLIENT, attributes=attributes), \
                        tracer.start_as_current_span("tool", attributes={A.SPAN_TYPE: "TOOL"}):
                    pass
    provider.shutdown()
    spans = list(memory.get_finished_spans())
    assert len(spans) == 50 * count
    return spans


def post(receiver: Receiver, spans: list[ReadableSpan]) -> ExportTraceServiceResponse:
    """One OTLP/HTTP protobuf request with a plain client (no retries); it must be answered 200."""
    assert receiver.http_address is not None
    conn = http.client.HTTPConnection(receiver.http_address.host, receiver.http_address.port, timeout=60)
    try:
        conn.request("POST", "/v1/traces", body=encode_spans(spans).SerializeToString(),
                     headers={"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body
    finally:
        conn.close()
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(body)
    assert answer.partial_success.rejected_spans == 0
    return answer


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[list[Receiver]]:
    """Two receivers over real pipelines and SQLite files of their own (``db`` attribute: the file)."""
    running: list[Receiver] = []
    with contextlib.ExitStack() as stack:
        for name in ("a", "b"):
            db = tmp_path / f"{name}.db"
            options = ServeOptions(store_url=f"sqlite:///{db}", http=Address("127.0.0.1", 0), grpc=None,
                                   sweep_interval=3600.0, shutdown_grace=10.0)
            store = open_store(options.store_url)
            stack.callback(store.close)
            receiver = stack.enter_context(start_in_thread(options, Pipeline(store)))
            receiver.db = db  # type: ignore[attr-defined]
            running.append(receiver)
        yield running


def rows(receiver: Receiver) -> list[tuple[Any, ...]]:
    """Every stored span row but the time it was received, in a stable order."""
    with sqlite3.connect(receiver.db) as conn:  # type: ignore[attr-defined]
        cursor = conn.execute("SELECT * FROM spans ORDER BY trace_id, span_id")
        keep = [i for i, column in enumerate(cursor.description) if column[0] != "received_ns"]
        return [tuple(row[i] for i in keep) for row in cursor.fetchall()]


def records(receiver: Receiver) -> dict[str, Any]:
    """Every session's summary and full record (turns, spans, aggregates), as JSON values."""
    return store_records(receiver.pipeline.store)  # type: ignore[union-attr]


def test_the_same_500_span_request_sent_3_times_is_stored_once(receivers: list[Receiver]) -> None:
    receiver = receivers[0]
    spans = sessions(10, "resent")
    post(receiver, spans)
    first_rows, first_records = rows(receiver), records(receiver)
    assert len(first_rows) == 500 and len(first_records) == 10
    assert {(s["status"], s["turn_count"], s["input_tokens"]) for s, _ in first_records.values()} == {
        ("PENDING", 24, sum(range(10, 34)))}  # no session span: open until the idle sweep
    for _ in range(2):
        post(receiver, spans)
        assert rows(receiver) == first_rows
        assert records(receiver) == first_records


@pytest.mark.parametrize("order", ["root first", "root last"])
def test_a_session_in_reverse_order_one_span_per_request_equals_one_in_order_delivery(
    receivers: list[Receiver], order: str
) -> None:
    """Both reversals: the order spans start in (the keyed root first) reversed gives the keyed root last, so
    every child waits unkeyed until it comes; the order they end in (the SDK's) reversed gives it first."""
    in_order, one_by_one = receivers
    spans = sessions(1, "reversed")
    assert sum(1 for s in spans if A.SESSION_CUSTOM_ID in (s.attributes or {})) == 1  # the key: root only
    post(in_order, spans)
    by_start = sorted(spans, key=lambda s: (s.start_time or 0, s.end_time or 0))
    delivery = list(reversed(by_start)) if order == "root last" else list(reversed(spans))
    assert (delivery[-1] if order == "root last" else delivery[0]).parent is None
    for span in delivery:  # one request each
        post(one_by_one, [span])
    expected = records(in_order)
    assert list(expected) == ["reversed-00"] and expected["reversed-00"][0]["turn_count"] == 24
    assert records(one_by_one) == expected
    assert rows(one_by_one) == rows(in_order)
