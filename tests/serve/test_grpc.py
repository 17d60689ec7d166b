"""OTLP/gRPC: the real OTLP/gRPC exporter and a grpcio stub against a real receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.server import Receiver

from ..decode.samples import encode, llm_spans
from .conftest import GatedPipeline, ReceiverFactory, span_count

SPANS = llm_spans(sessions=2, turns=2)


@contextmanager
def _stub(receiver: Receiver) -> Iterator[TraceServiceStub]:
    with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
        yield TraceServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_real_exporter(
    receiver: Receiver, pipeline: Pipeline, store_url: str, compression: grpc.Compression
) -> None:
    exporter = OTLPSpanExporter(endpoint=str(receiver.grpc_address), insecure=True, compression=compression)
    assert exporter.export(SPANS) is SpanExportResult.SUCCESS
    assert span_count(store_url) == len(SPANS)  # committed before the answer
    assert {s.custom_id for s in pipeline.store.list_sessions(limit=10)} == {"conv-0", "conv-1"}
    exporter.shutdown()


def test_partial_success(receiver: Receiver, store_url: str) -> None:
    request = encode(SPANS)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].span_id = b""
    spans[1].trace_id = bytes(16)
    with _stub(receiver) as stub:
        response = stub.Export(request, timeout=30)
    assert response.partial_success.rejected_spans == 2
    assert "span_id" in response.partial_success.error_message
    assert span_count(store_url) == len(SPANS) - 2


def test_empty_request(receiver: Receiver) -> None:
    with _stub(receiver) as stub:
        response = stub.Export(ExportTraceServiceRequest(), timeout=30)
    assert not response.HasField("partial_success")


def test_token(make_receiver: ReceiverFactory, store_url: str) -> None:
    with make_receiver(token="s3cret") as receiver, _stub(receiver) as stub:
        for metadata in ([], [("authorization", "Bearer wrong")], [("authorization", "s3cret")]):
            with pytest.raises(grpc.RpcError) as failure:
                stub.Export(encode(SPANS), metadata=metadata, timeout=30)
            assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert span_count(store_url) == 0
        stub.Export(encode(SPANS), metadata=[("authorization", "Bearer s3cret")], timeout=30)
        exporter = OTLPSpanExporter(
            endpoint=str(receiver.grpc_address), insecure=True, headers={"authorization": "Bearer s3cret"}
        )
        assert exporter.export(SPANS) is SpanExportResult.SUCCESS
        exporter.shutdown()
    assert span_count(store_url) == len(SPANS)


def test_message_over_the_limit_is_resource_exhausted(make_receiver: ReceiverFactory) -> None:
    with make_receiver(max_body_bytes=4096) as receiver, _stub(receiver) as stub:
        with pytest.raises(grpc.RpcError) as failure:
            stub.Export(encode(llm_spans(sessions=1, turns=2, big=4096)), timeout=30)
        assert failure.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        stub.Export(ExportTraceServiceRequest(), timeout=30)  # still serving


def test_overload_is_unavailable_with_retry_info(
    make_receiver: ReceiverFactory, pipeline: Pipeline, store_url: str
) -> None:
    gated = GatedPipeline(pipeline)
    with make_receiver(gated, max_inflight=1, queue_timeout=0.05) as receiver, _stub(receiver) as stub:
        first = threading.Thread(target=lambda: stub.Export(encode(SPANS), timeout=60))
        first.start()
        assert gated.entered.wait(30)
        with pytest.raises(grpc.RpcError) as failure:
            stub.Export(encode(SPANS), timeout=30)
        error = failure.value
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        retry_info = dict(error.trailing_metadata())["google.rpc.retryinfo-bin"]
        assert RetryInfo.FromString(retry_info).retry_delay.seconds == 1
        gated.gate.set()
        first.join()
    assert span_count(store_url) == len(SPANS)


def test_a_burst_beyond_the_queue_is_told_to_retry_not_dropped(
    make_receiver: ReceiverFactory, pipeline: Pipeline, store_url: str
) -> None:
    """More concurrent calls than max_inflight + max_queued: every extra one gets UNAVAILABLE + RetryInfo (which
    OTLP clients retry), none grpcio's RESOURCE_EXHAUSTED (which they drop)."""
    gated = GatedPipeline(pipeline)
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()
    with make_receiver(gated, max_inflight=1, max_queued=1, queue_timeout=30) as receiver, \
            _stub(receiver) as stub:

        def call() -> None:
            try:
                stub.Export(encode(SPANS), timeout=60)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            with lock:
                codes.append(code)

        first = threading.Thread(target=call)
        first.start()
        assert gated.entered.wait(30)
        burst = [threading.Thread(target=call) for _ in range(20)]
        for thread in burst:
            thread.start()
        for _ in range(600):  # the queued call waits for the gate; every other one is answered at once
            with lock:
                if len(codes) >= 19:
                    break
            threading.Event().wait(0.05)
        gated.gate.set()
        for thread in [first, *burst]:
            thread.join()
    assert grpc.StatusCode.RESOURCE_EXHAUSTED not in codes, codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes.count(grpc.StatusCode.UNAVAILABLE) >= 19, codes
    assert span_count(store_url) == len(SPANS)


def test_undecodable_message_is_invalid_argument(receiver: Receiver, store_url: str) -> None:
    """The service takes raw bytes (see galtea_otel.serve.grpc_service) and parses them itself: garbage is
    INVALID_ARGUMENT, as OTLP asks, and the receiver keeps serving."""
    with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as failure:
            export(b"\xff" * 64, timeout=30)
        assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with _stub(receiver) as stub:
            stub.Export(encode(SPANS), timeout=30)
    assert span_count(store_url) == len(SPANS)


def test_token_is_checked_before_the_message_is_read(make_receiver: ReceiverFactory) -> None:
    """A wrong token is refused on the call's headers, before grpcio reads (or size-checks) the message."""
    too_big = encode(llm_spans(sessions=1, turns=2, big=4096))
    with make_receiver(token="s3cret", max_body_bytes=4096) as receiver, _stub(receiver) as stub:
        with pytest.raises(grpc.RpcError) as failure:
            stub.Export(too_big, metadata=[("authorization", "Bearer wrong")], timeout=30)
        assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as failure:
            stub.Export(too_big, metadata=[("authorization", "Bearer s3cret")], timeout=30)
        assert failure.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
