"""Realistic spans made by the real OpenTelemetry SDK, decoded into SpanData, for pipeline tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer

from galtea_otel import attributes as A
from galtea_otel.decode.sdk import from_sdk
from galtea_otel.spandata import SpanData


@contextmanager
def sdk_tracer(resource: dict[str, str] | None = None) -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests"), exporter
    provider.shutdown()


def key(custom_id: str, version: str) -> dict[str, str]:
    return {A.SESSION_CUSTOM_ID: custom_id, A.SESSION_VERSION: version}


def conversation(tracer: Tracer, custom_id: str, version: str, turns: int, *, fail: bool = False,
                 failed_turn: int | None = None, keyed_children: bool = True) -> None:
    """A session span, its start marker, and ``turns`` inference spans each wrapping an LLM client span and a
    tool span. With ``keyed_children=False`` only the session span and markers carry the key: the children must
    get it by resolution."""
    k = key(custom_id, version)
    child = k if keyed_children else {}
    with tracer.start_as_current_span(
        "galtea.session",
        attributes={**k, A.SPAN_TYPE: "SESSION", A.SESSION_METADATA: json.dumps({"user": custom_id})},
    ) as session:
        with tracer.start_as_current_span("galtea.session.start", attributes={**k, A.SESSION_EVENT: "start"}):
            pass
        for i in range(turns):
            with tracer.start_as_current_span(
                "chat", attributes={**child, A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: json.dumps(f"question {i}")}
            ) as turn:
                with tracer.start_as_current_span("search", attributes={**child, A.SPAN_TYPE: "RETRIEVER"}):
                    pass
                with tracer.start_as_current_span(
                    "openai.chat",
                    attributes={**child, "gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-test",
                                "gen_ai.usage.input_tokens": 10 + i, "gen_ai.usage.output_tokens": 5,
                                "galtea.inference.cost": 0.001},
                ):
                    pass
                if i == failed_turn:
                    turn.set_status(Status(StatusCode.ERROR, "TimeoutError: upstream"))
                else:
                    turn.set_attribute(A.SPAN_OUTPUT, json.dumps({"answer": i}))
        if fail:
            session.set_status(Status(StatusCode.ERROR, "RuntimeError: conversation broke"))


def collect(exporter: InMemorySpanExporter) -> list[SpanData]:
    return [from_sdk(s) for s in exporter.get_finished_spans()]
