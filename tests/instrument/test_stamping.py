"""Session stamping stores exactly what ``span.set_attributes(stamp)`` stores, on its fast path and off it."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel import attributes as A
from galtea_otel.instrument.context import make_stamp


def _attributes_both_ways(limits: SpanLimits, start: dict[str, Any], custom_id: str) -> tuple[Any, Any]:
    """(attributes stamped by galtea-otel inside a session, attributes of a plain span given the stamp itself)"""
    stamped, plain = InMemorySpanExporter(), InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(stamped))
    galtea_otel.configure(tracer_provider=provider, exporter=InMemorySpanExporter())
    with galtea_otel.session(custom_id=custom_id, version="2"):
        provider.get_tracer("t").start_span("s", attributes=start).end()
    galtea_otel.shutdown()
    reference = TracerProvider(span_limits=limits)
    reference.add_span_processor(SimpleSpanProcessor(plain))
    span = reference.get_tracer("t").start_span("s", attributes=start)
    span.set_attributes(make_stamp(custom_id, "2"))
    span.end()
    got = next(s for s in stamped.get_finished_spans() if s.name == "s")
    return list((got.attributes or {}).items()), list((plain.get_finished_spans()[0].attributes or {}).items())


def test_fast_path_matches_set_attributes() -> None:
    got, want = _attributes_both_ways(SpanLimits(), {"gen_ai.operation.name": "chat", "n": 3}, "conv-1")
    assert got == want
    assert [k for k, _ in got][-4:] == list(A.STAMPED_KEYS)


def test_value_length_limit_truncates_the_stamp_like_the_sdk() -> None:
    got, want = _attributes_both_ways(SpanLimits(max_attribute_length=4), {"a": 1}, "a-long-conversation-id")
    assert got == want
    assert ("session.id", "a-lo") in got


def test_a_key_already_set_at_start_moves_like_the_sdk_moves_it() -> None:
    got, want = _attributes_both_ways(SpanLimits(), {"session.id": "theirs", "b": 2}, "conv-2")
    assert got == want
    assert dict(got)["session.id"] == "conv-2"


def test_attribute_count_limit_evicts_like_the_sdk() -> None:
    start = {f"k{i}": i for i in range(6)}
    got, want = _attributes_both_ways(SpanLimits(max_span_attributes=8), start, "conv-3")
    assert got == want
    assert len(got) == 8
