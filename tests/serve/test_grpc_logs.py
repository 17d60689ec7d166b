"""OTLP/gRPC logs (``LogsService/Export``, issue 11): ``gen_ai.evaluation.result`` log records sent by the real OTLP
gRPC log exporter of the Python SDK to a real receiver, with the contract of gRPC traces."""

from __future__ import annotations

import sqlite3

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanContext

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.serve.server import Receiver

from .conftest import ReceiverFactory

LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def _chat_span(receiver: Receiver, conversation: str, token: str | None = None) -> SpanContext:
    """One LLM span of a conversation, sent with the real OTLP gRPC span exporter; its context."""
    headers = {"authorization": f"Bearer {token}"} if token else None
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=str(receiver.grpc_address), insecure=True, headers=headers)))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("chat", attributes={"gen_ai.conversation.id": conversation,
                                                          "gen_ai.operation.name": "chat"}) as span:
        context = span.get_span_context()
    provider.shutdown()
    return context


def _evaluation_records(span: SpanContext, conversation: str) -> list[ReadableLogRecord]:
    """What an app's OpenTelemetry logs SDK emits: one turn-level evaluation in the evaluated span's context, one
    session-level one carrying the session key."""
    captured = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
    logger = provider.get_logger("evals")
    in_span = trace.set_span_in_context(trace.NonRecordingSpan(span))
    logger.emit(event_name="gen_ai.evaluation.result", context=in_span,
                attributes={"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.75,
                            "gen_ai.evaluation.explanation": "on topic"})
    logger.emit(event_name="gen_ai.evaluation.result",
                attributes={"gen_ai.conversation.id": conversation, "gen_ai.evaluation.name": "resolved",
                            "gen_ai.evaluation.score.label": "yes"})
    provider.shutdown()
    records = list(captured.get_finished_logs())
    assert len(records) == 2
    return records


def _evaluations(store: object, conversation: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    key = store.find_session_key(conversation)  # type: ignore[attr-defined]
    assert key is not None
    detail = read_session(store, key)  # type: ignore[arg-type]
    assert detail is not None
    [turn] = detail.inference_results
    return ([(e.name, e.score, e.explanation, e.source) for e in turn.evaluations],
            [(e.name, e.label, e.source) for e in detail.evaluations])


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_the_real_otlp_grpc_log_exporter(receiver: Receiver, pipeline: Pipeline,
                                         compression: grpc.Compression) -> None:
    span = _chat_span(receiver, "grpc-logs-1")
    records = _evaluation_records(span, "grpc-logs-1")
    exporter = OTLPLogExporter(endpoint=str(receiver.grpc_address), insecure=True, compression=compression)
    for _ in range(2):  # the second export is a replay: nothing doubles
        assert exporter.export(records) is LogRecordExportResult.SUCCESS
    exporter.shutdown()
    on_turn, on_session = _evaluations(pipeline.store, "grpc-logs-1")  # committed before the answer
    assert on_turn == [("relevance", 0.75, "on topic", "ingested")]
    assert on_session == [("resolved", "yes", "ingested")]
    assert receiver.grpc_service.stats["logs_OK"] == 2


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def test_records_that_cannot_be_placed_are_a_partial_success(receiver: Receiver, pipeline: Pipeline) -> None:
    records = [
        LogRecord(time_unix_nano=1, event_name="gen_ai.evaluation.result",  # no span context, no session key
                  attributes=[_kv("gen_ai.evaluation.name", "lost")]),
        LogRecord(time_unix_nano=2, event_name="gen_ai.evaluation.result", trace_id=b"\x01" * 5,  # bad trace id
                  attributes=[_kv("gen_ai.evaluation.name", "bad")]),
        LogRecord(time_unix_nano=3, event_name="gen_ai.evaluation.result",
                  attributes=[_kv("session.id", "grpc-logs-2"), _kv("gen_ai.evaluation.name", "kept"),
                              _kv("gen_ai.evaluation.score.label", "ok")]),
        LogRecord(time_unix_nano=4, attributes=[_kv("message", "an ordinary log line")]),  # not ours: ignored
    ]
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])])
    with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
        export = channel.unary_unary(LOGS_EXPORT, response_deserializer=ExportLogsServiceResponse.FromString)
        response = export(request.SerializeToString(), timeout=30)
        assert response.partial_success.rejected_log_records == 2
        assert "span context or a session key" in response.partial_success.error_message
        empty = export(ExportLogsServiceRequest().SerializeToString(), timeout=30)
        assert not empty.HasField("partial_success")
        with pytest.raises(grpc.RpcError) as raised:
            export(b"\xff\xff\xff", timeout=30)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    key = pipeline.store.find_session_key("grpc-logs-2")
    assert key is not None
    detail = read_session(pipeline.store, key)
    assert detail is not None and [(e.name, e.label) for e in detail.evaluations] == [("kept", "ok")]


def test_token_and_size_limit(make_receiver: ReceiverFactory, pipeline: Pipeline) -> None:
    with make_receiver(token="s3cret", max_body_bytes=4096) as receiver:
        span = _chat_span(receiver, "grpc-logs-3", token="s3cret")
        records = _evaluation_records(span, "grpc-logs-3")
        body = OTLPLogExporter(endpoint="unused", insecure=True)._translate_data(records).SerializeToString()
        with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
            export = channel.unary_unary(LOGS_EXPORT, response_deserializer=ExportLogsServiceResponse.FromString)
            for metadata in ([], [("authorization", "Bearer wrong")]):
                with pytest.raises(grpc.RpcError) as raised:
                    export(body, metadata=metadata, timeout=30)
                assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as raised:
                export(_big_record(), metadata=[("authorization", "Bearer s3cret")], timeout=30)
            assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            key = pipeline.store.find_session_key("grpc-logs-3")
            assert key is not None
            detail = read_session(pipeline.store, key)
            assert detail is not None and detail.evaluations == []  # nothing of the refused calls is stored
        exporter = OTLPLogExporter(endpoint=str(receiver.grpc_address), insecure=True,
                                   headers={"authorization": "Bearer s3cret"})
        assert exporter.export(records) is LogRecordExportResult.SUCCESS
        exporter.shutdown()
    assert _evaluations(pipeline.store, "grpc-logs-3")[1] == [("resolved", "yes", "ingested")]


def _big_record() -> bytes:
    record = LogRecord(time_unix_nano=5, event_name="gen_ai.evaluation.result",
                       attributes=[_kv("session.id", "x"), _kv("gen_ai.evaluation.name", "big"),
                                   _kv("gen_ai.evaluation.explanation", "x" * 8192)])
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])])
    return bytes(request.SerializeToString())


def test_unavailable_not_ok_when_the_store_fails(
    make_receiver: ReceiverFactory, locked_store: tuple[Pipeline, sqlite3.Connection]
) -> None:
    """Ack only after commit: the store's write lock is held by another connection, so the commit really fails;
    the call gets UNAVAILABLE + RetryInfo, not OK; once the lock is gone the same request is stored."""
    pipeline, holder = locked_store
    with make_receiver(pipeline, http=None) as receiver:
        span = _chat_span(receiver, "grpc-logs-4")
        body = OTLPLogExporter(endpoint="unused", insecure=True)._translate_data(
            _evaluation_records(span, "grpc-logs-4")).SerializeToString()
        with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
            export = channel.unary_unary(LOGS_EXPORT, response_deserializer=ExportLogsServiceResponse.FromString)
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(grpc.RpcError) as raised:
                export(body, timeout=30)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
            retry = dict(raised.value.trailing_metadata() or ())["google.rpc.retryinfo-bin"]
            assert RetryInfo.FromString(retry).retry_delay.seconds == 1
            holder.execute("ROLLBACK")
            assert _evaluations(pipeline.store, "grpc-logs-4") == ([], [])
            export(body, timeout=30)
    assert _evaluations(pipeline.store, "grpc-logs-4") == (
        [("relevance", 0.75, "on topic", "ingested")], [("resolved", "yes", "ingested")])
