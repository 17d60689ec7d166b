"""OTLP logs (``POST /v1/logs``) carrying ``gen_ai.evaluation.result`` records, to a real receiver."""

from __future__ import annotations

import json
import urllib.request

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from galtea_otel.pipeline import read_session
from galtea_otel.serve.server import Receiver
from galtea_otel.store import Store
from tests.conformance.conftest import DEFAULT_VERSION


def _kv(key: str, value: str | float) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(double_value=value) if isinstance(value, float)
                    else AnyValue(string_value=value))


def _post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.read()


def test_evaluation_log_records_score_the_logged_span_or_the_session(receiver: Receiver, store: Store) -> None:
    assert receiver.http_address is not None
    base = f"http://{receiver.http_address.host}:{receiver.http_address.port}"
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=base + "/v1/traces")))
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("chat", attributes={"gen_ai.conversation.id": "logged-1",
                                                          "gen_ai.operation.name": "chat"}) as span:
        context = span.get_span_context()
    provider.shutdown()

    records = [
        LogRecord(time_unix_nano=context.trace_id and 1_700_000_000_000_000_000, event_name="gen_ai.evaluation.result",
                  trace_id=context.trace_id.to_bytes(16, "big"), span_id=context.span_id.to_bytes(8, "big"),
                  attributes=[_kv("gen_ai.evaluation.name", "relevance"), _kv("gen_ai.evaluation.score.value", 0.5)]),
        LogRecord(time_unix_nano=1_700_000_000_000_000_001,
                  attributes=[_kv("event.name", "gen_ai.evaluation.result"), _kv("gen_ai.conversation.id", "logged-1"),
                              _kv("gen_ai.evaluation.name", "resolved"), _kv("gen_ai.evaluation.score.label", "yes")]),
        LogRecord(time_unix_nano=1, event_name="gen_ai.evaluation.result",  # nowhere to put it: rejected
                  attributes=[_kv("gen_ai.evaluation.name", "lost")]),
        LogRecord(time_unix_nano=2, attributes=[_kv("message", "an ordinary log line")]),  # not ours: ignored
    ]
    body = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])])
    for _ in range(2):  # the second time is a replay: nothing doubles
        status, answer = _post(base + "/v1/logs", body.SerializeToString(), "application/x-protobuf")
        assert status == 200
        response = ExportLogsServiceResponse()
        response.ParseFromString(answer)
        assert response.partial_success.rejected_log_records == 1
    as_json = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": "1700000000000000002", "eventName": "gen_ai.evaluation.result",
        "attributes": [{"key": "session.id", "value": {"stringValue": "logged-1"}},
                       {"key": "gen_ai.evaluation.name", "value": {"stringValue": "tone"}},
                       {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": 1.0}}]}]}]}]}
    assert _post(base + "/v1/logs", json.dumps(as_json).encode(), "application/json")[0] == 200

    detail = read_session(store, ("logged-1", DEFAULT_VERSION))
    assert detail is not None and len(detail.inference_results) == 1
    [turn] = detail.inference_results
    assert [(e.name, e.score, e.source) for e in turn.evaluations] == [("relevance", 0.5, "ingested")]
    assert sorted((e.name, e.label, e.score) for e in detail.evaluations) == [
        ("resolved", "yes", None), ("tone", None, 1.0)]
    assert detail.spans == []  # the carriers are not spans of the session
