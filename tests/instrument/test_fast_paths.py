"""The instrumentation's shortcuts on every span store exactly what the general path stores.

``set_text_attribute`` (a captured input / output) against the SDK's ``span.set_attribute``; ``encode``'s
shortcut for short ASCII strings against the full serialize -> redact -> truncate path; ``span_bytes`` (which
reads the SDK span's attribute dict and event deque) against the same sum over the public views; and what the
stamping remembers for the attribute limit, on a foreign span whose kind is set at start.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel import attributes as A
from galtea_otel.config import Config
from galtea_otel.instrument import capture
from galtea_otel.instrument.processor import SPAN_OVERHEAD_BYTES, set_text_attribute, span_bytes

from .conftest import Otel


def _both_ways(limits: SpanLimits, start: dict[str, Any], sets: list[tuple[str, str]],
               end_first: bool = False) -> tuple[ReadableSpan, ReadableSpan]:
    """(a span given ``sets`` through set_text_attribute, the same through span.set_attribute)"""
    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for setter in (set_text_attribute, lambda span, key, text: span.set_attribute(key, text)):
        span = tracer.start_span("s", attributes=start)
        if end_first:
            span.end()
        for key, text in sets:
            setter(span, key, text)
        if not end_first:
            span.end()
    fast, sdk = memory.get_finished_spans()
    return fast, sdk


@pytest.mark.parametrize(("limits", "start", "sets"), [
    (SpanLimits(), {"a": 1}, [(A.SPAN_INPUT, '"hi"'), (A.SPAN_OUTPUT, '"there"')]),
    (SpanLimits(), {A.SPAN_INPUT: "theirs", "b": 2}, [(A.SPAN_INPUT, '"ours"')]),  # set already: moves last
    (SpanLimits(max_attribute_length=5), {}, [(A.SPAN_INPUT, '"a long input"'), (A.SPAN_OUTPUT, '"ok"')]),
    (SpanLimits(max_span_attributes=3), {"a": 1, "b": 2, "c": 3}, [(A.SPAN_INPUT, '"evicts a"')]),
    (SpanLimits(max_span_attributes=0), {}, [(A.SPAN_INPUT, '"dropped"')]),
    (SpanLimits(), {}, [(A.SPAN_INPUT, "")]),
], ids=["plain", "key-set-already", "value-length-limit", "count-limit", "no-attributes-allowed", "empty"])
def test_set_text_attribute_stores_what_set_attribute_stores(limits: SpanLimits, start: dict[str, Any],
                                                             sets: list[tuple[str, str]]) -> None:
    fast, sdk = _both_ways(limits, start, sets)
    assert list((fast.attributes or {}).items()) == list((sdk.attributes or {}).items())
    assert fast.dropped_attributes == sdk.dropped_attributes


def test_set_text_attribute_on_an_ended_span_changes_nothing() -> None:
    fast, sdk = _both_ways(SpanLimits(), {"a": 1}, [(A.SPAN_OUTPUT, '"late"')], end_first=True)
    assert dict(fast.attributes or {}) == dict(sdk.attributes or {}) == {"a": 1}


_TEXTS = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=80),  # ASCII, control characters included
    st.text(max_size=40),  # any code point, lone surrogates included
    # around the shortcut's bound at a 128-byte limit: 21 characters escaped as \u00XX fit, 22 do not; lone
    # surrogates (which the full path replaces) and non-ASCII characters
    st.sampled_from(["", '"', "\\", "\x00", "a" * 21, "\x01" * 21, "\x01" * 22, "\x00" * 80, "\ud800",
                     "a\udfffb", "\u00e9" * 21]),
)


@settings(max_examples=300, deadline=None)
@given(value=_TEXTS, max_value_bytes=st.sampled_from([128, 130, 131, 132, 200, 65536]),
       redact=st.sampled_from([None, "upper"]))
def test_encode_shortcut_matches_the_full_path(value: str, max_value_bytes: int, redact: str | None) -> None:
    config = Config(trace.NoOpTracer(), max_value_bytes=max_value_bytes, redact=str.upper if redact else None)
    assert capture.encode(value, config) == capture._encode(value, config)


def _public_bytes(span: ReadableSpan) -> int:
    size = SPAN_OVERHEAD_BYTES
    for value in (span.attributes or {}).values():
        size += len(value) if type(value) is str else 0
    for event in span.events:
        for value in (event.attributes or {}).values():
            size += len(value) if type(value) is str else 0
    return size


def test_span_bytes_counts_what_the_public_views_show() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("t").start_span("s", attributes={"text": "x" * 1000, "n": 7, "flag": True})
    span.set_attribute("list", ["not", "counted"])
    span.add_event("e1", {"message": "y" * 500, "count": 3})
    span.add_event("e2")
    span.end()
    provider.get_tracer("t").start_span("bare").end()
    spans = memory.get_finished_spans()
    assert [span_bytes(s) for s in spans] == [_public_bytes(s) for s in spans]
    assert span_bytes(spans[0]) == SPAN_OVERHEAD_BYTES + 1500


def test_a_foreign_span_keeps_its_kind_and_stamp_past_the_attribute_limit(otel: Otel) -> None:
    """The kind set at start (here an LLM call's operation name) is among the oldest attributes, like the stamp:
    both are put back when 300 attributes overflow the limit of 128."""
    with galtea_otel.session(custom_id="k", version="1"):
        live = otel.tracer.start_span("llm", attributes={A.GEN_AI_OPERATION_NAME: "chat", "first": 0})
        for i in range(300):
            live.set_attribute(f"k{i}", i)
        live.end()
    got = dict(otel.one("llm").attributes or {})
    assert len(got) == 128
    for key in A.STAMPED_KEYS:
        assert key in got, key
    assert got[A.GEN_AI_OPERATION_NAME] == "chat"  # evicted with the oldest, put back
    assert "first" not in got and got["k299"] == 299
