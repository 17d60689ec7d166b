"""OTLP payloads made by the real OpenTelemetry SDK and its real OTLP encoder, for the tests."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from galtea_otel import attributes as A


def llm_spans(sessions: int = 2, turns: int = 3, *, big: int = 64) -> list[ReadableSpan]:
    """Real SDK spans: per session, a session span with ``turns`` LLM spans (each with a tool child); every
    attribute type the SDK allows, events with attributes, an error turn, a resource and a scope."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "chat-app", "deployment.env": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.llm", "1.2.3")
    for s in range(sessions):
        key = {A.SESSION_CUSTOM_ID: f"conv-{s}", A.SESSION_VERSION: "1.4.0"}
        with tracer.start_as_current_span("session", attributes={**key, A.SPAN_TYPE: A.TYPE_SESSION}):
            for t in range(turns):
                failed = t == turns - 1 and s % 2 == 1
                with tracer.start_as_current_span(f"chat gpt-4o #{t}", kind=SpanKind.CLIENT) as span:
                    span.set_attributes(
                        {
                            **key,
                            A.SPAN_TYPE: A.TYPE_GENERATION,
                            A.GEN_AI_OPERATION_NAME: "chat",
                            A.GEN_AI_REQUEST_MODEL: "gpt-4o",
                            A.GEN_AI_INPUT_TOKENS: 120 + t,
                            A.GEN_AI_OUTPUT_TOKENS: 300,
                            A.SPAN_INPUT: "q" * big,
                            A.SPAN_OUTPUT: "a" * big,
                            "gen_ai.request.temperature": 0.25,
                            "gen_ai.request.stream": t % 2 == 0,
                            "gen_ai.response.finish_reasons": ("stop", "length"),
                            "llm.token_ids": (1, 2, 3),
                            "llm.scores": (0.5, 1.5),
                            "llm.flags": (True, False),
                        }
                    )
                    span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "hi", "n": 1})
                    with tracer.start_as_current_span("search-docs", attributes={A.SPAN_TYPE: "TOOL"}):
                        pass
                    if failed:
                        span.set_status(Status(StatusCode.ERROR, "HTTP 500 from the model"))
                    else:
                        span.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def encode(spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
    """The real OTLP/protobuf encoder of opentelemetry-exporter-otlp."""
    return encode_spans(spans)


def proto_body(spans: Sequence[ReadableSpan]) -> bytes:
    return bytes(encode(spans).SerializeToString())


def to_otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON of a request: protobuf's JSON mapping with hex ids and integer enums (the OTLP rules)."""
    doc: dict[str, Any] = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
                for link in span.get("links", []):
                    for field in ("traceId", "spanId"):
                        if field in link:
                            link[field] = base64.b64decode(link[field]).hex()
    return doc


def json_span(
    trace_id: str = "5B8EFFF798038103D269B633813FC60C",
    span_id: str = "EEE19B7EC3C1B174",
    parent: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A hand-written OTLP/JSON span (the example of the OTLP specification, upper-case hex)."""
    span: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
    }
    if parent is not None:
        span["parentSpanId"] = parent
    span.update(extra)
    return span


def json_request(*spans: dict[str, Any], resource: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": resource
                    if resource is not None
                    else [{"key": "service.name", "value": {"stringValue": "my.service"}}]
                },
                "scopeSpans": [{"scope": {"name": "my.library", "version": "1.0.0"}, "spans": list(spans)}],
            }
        ]
    }
