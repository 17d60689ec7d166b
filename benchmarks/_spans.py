"""Realistic LLM-app spans made by the real OpenTelemetry SDK, shared by the benchmarks."""

from __future__ import annotations

import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

TEXT = "lorem ipsum dolor sit amet " * 38  # about 1 KB


def make_spans(sessions: int, turns: int) -> list[ReadableSpan]:
    """Each session: a session span, a start marker, and per turn an inference span with a nested LLM client
    span and a tool span: about 12 attributes each, 1 KB of input and output on the inference spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench", "service.version": "1.0"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for s in range(sessions):
        key = {"galtea.session.custom_id": f"conv-{s}", "galtea.session.version": "1.0",
               "gen_ai.conversation.id": f"conv-{s}", "session.id": f"conv-{s}"}
        with tracer.start_as_current_span("galtea.session", attributes={
                **key, "galtea.span.type": "SESSION", "galtea.session.metadata": json.dumps({"user": s})}):
            with tracer.start_as_current_span("galtea.session.start",
                                              attributes={**key, "galtea.session.event": "start"}):
                pass
            for t in range(turns):
                with tracer.start_as_current_span("chat", attributes={
                        **key, "galtea.span.type": "GENERATION", "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "galtea.span.input": json.dumps(f"{t}: {TEXT}"),
                        "galtea.span.output": json.dumps(f"{t}: {TEXT}")}):
                    with tracer.start_as_current_span("openai.chat", attributes={
                            **key, "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024",
                            "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 80,
                            "server.address": "api.openai.com", "gen_ai.response.id": f"r-{s}-{t}"}):
                        pass
                    with tracer.start_as_current_span("lookup", attributes={
                            **key, "galtea.span.type": "TOOL", "galtea.span.input": json.dumps({"q": t}),
                            "galtea.span.output": json.dumps({"hits": [1, 2, 3]})}):
                        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def batches(spans: list[ReadableSpan], size: int = 512) -> list[list[ReadableSpan]]:
    return [spans[i:i + size] for i in range(0, len(spans), size)]
