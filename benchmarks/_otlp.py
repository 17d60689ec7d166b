"""OTLP requests of LLM-app turns, encoded by the OpenTelemetry SDK's own encoder, with fresh ids per copy.

A *turn* is what one user message makes: an inference span (``chat``, GENERATION, 1 KB of input and of
output) with a nested LLM client span (``openai.chat``) and a tool span (``lookup``), every span stamped with
the session's key attributes, as galtea-otel's instrumentation stamps them. Two shapes:

- ``"traces"``: each turn is its own trace (one trace per request of the app);
- ``"huge"``: every turn is a child of one ``galtea.session`` span, all in one trace; the session span itself
  is made by :func:`session_span_request` and is meant to arrive last (it ends last).

The spans are made once by the real SDK and encoded by ``encode_spans``; copies change ids, times, the
session's key and the turn's text only, on the protobuf messages.
"""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TEXT = "lorem ipsum dolor sit amet " * 38  # about 1 KB
KEY_ATTRIBUTES = ("galtea.session.custom_id", "gen_ai.conversation.id", "session.id")
BASE_NS = 1_780_000_000_000_000_000
TURN_NS = 1_000_000_000  # one turn a second


def _sdk_spans() -> tuple[list[ReadableSpan], ReadableSpan]:
    """(the three spans of one turn, inside a session span; the session span)"""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench", "service.version": "1.0"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    key = {"galtea.session.custom_id": "conv", "galtea.session.version": "1.0",
           "gen_ai.conversation.id": "conv", "session.id": "conv"}
    with tracer.start_as_current_span("galtea.session", attributes={**key, "galtea.span.type": "SESSION"}), \
            tracer.start_as_current_span("chat", attributes={
                **key, "galtea.span.type": "GENERATION", "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini", "galtea.span.input": json.dumps(TEXT),
                "galtea.span.output": json.dumps(TEXT)}):
        with tracer.start_as_current_span("openai.chat", attributes={
                **key, "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024",
                "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 80,
                "server.address": "api.openai.com", "gen_ai.response.id": "r"}):
            pass
        with tracer.start_as_current_span("lookup", attributes={
                **key, "galtea.span.type": "TOOL", "galtea.span.input": json.dumps({"q": 1}),
                "galtea.span.output": json.dumps({"hits": [1, 2, 3]})}):
            pass
    provider.shutdown()
    spans = list(memory.get_finished_spans())
    session = next(s for s in spans if s.name == "galtea.session")
    return [s for s in spans if s is not session], session


class TurnFactory:
    """Makes OTLP requests of turns for session number ``s``, turn number ``t`` (ids derived from both)."""

    def __init__(self) -> None:
        turn, session = _sdk_spans()
        self.turn_request = encode_spans(turn)
        self.session_request = encode_spans([session])
        self._session_start = session.start_time or 0
        ids = {s.context.span_id: i for i, s in enumerate([session, *turn]) if s.context is not None}
        self._index = ids  # SDK span id -> 0 (session), 1..3 (the turn's spans)

    @staticmethod
    def _trace_id(s: int, t: int) -> bytes:
        return b"\x7e" + s.to_bytes(7, "big") + t.to_bytes(8, "big")

    @staticmethod
    def _span_id(s: int, t: int, j: int) -> bytes:
        return (s.to_bytes(3, "big") + (t * 4 + j).to_bytes(5, "big")).replace(b"\x00" * 8, b"\x00" * 7 + b"\x01")

    def _relabel(self, span: PbSpan, s: int, t: int, shape: str, custom_id: str) -> None:
        j = self._index[int.from_bytes(span.span_id, "big")]
        parent = self._index.get(int.from_bytes(span.parent_span_id, "big")) if span.parent_span_id else None
        span.trace_id = self._trace_id(s, 0 if shape == "huge" else t + 1)
        span.span_id = self._span_id(s, 0 if j == 0 else t + 1, j)
        if parent is not None:
            if parent == 0 and shape != "huge":
                span.ClearField("parent_span_id")  # the turn is its trace's root
            else:
                span.parent_span_id = self._span_id(s, 0 if parent == 0 else t + 1, parent)
        shift = BASE_NS + t * TURN_NS - self._session_start
        span.start_time_unix_nano += shift
        span.end_time_unix_nano += shift
        for kv in span.attributes:
            if kv.key in KEY_ATTRIBUTES:
                kv.value.string_value = custom_id
            elif kv.key == "galtea.span.input" and j == 1:
                kv.value.string_value = json.dumps(f"turn {t}: {TEXT}")

    def turns(self, s: int, first: int, count: int, shape: str = "traces") -> ExportTraceServiceRequest:
        """One request holding turns ``first`` .. ``first + count - 1`` of session ``s``."""
        request = ExportTraceServiceRequest()
        request.CopyFrom(self.turn_request)
        scope = request.resource_spans[0].scope_spans[0]
        template = list(scope.spans)
        del scope.spans[:]
        custom_id = f"conv-{s}"
        for t in range(first, first + count):
            for source in template:
                span = scope.spans.add()
                span.CopyFrom(source)
                self._relabel(span, s, t, shape, custom_id)
        return request

    def session_span(self, s: int, turns: int) -> ExportTraceServiceRequest:
        """The ``galtea.session`` span of session ``s`` in the "huge" shape, ending after ``turns`` turns."""
        request = ExportTraceServiceRequest()
        request.CopyFrom(self.session_request)
        span = request.resource_spans[0].scope_spans[0].spans[0]
        self._relabel(span, s, 0, "huge", f"conv-{s}")
        span.end_time_unix_nano = BASE_NS + (turns + 1) * TURN_NS
        return request
