"""Fixtures: a real SDK TracerProvider per test, galtea-otel configured on it, spans read back in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel import attributes as A


@dataclass
class Otel:
    provider: TracerProvider
    memory: InMemorySpanExporter  # every span, synchronously (SimpleSpanProcessor)
    exported: InMemorySpanExporter  # what configure()'s BatchSpanProcessor exported

    def spans(self) -> list[ReadableSpan]:
        return list(self.memory.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.spans()]}"
        return found[0]

    @property
    def tracer(self) -> Any:
        return self.provider.get_tracer("tests")


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def loads(span: ReadableSpan, key: str) -> Any:
    value = attr(span, key)
    assert isinstance(value, str), f"{key} missing on {span.name}: {dict(span.attributes or {})}"
    return json.loads(value)


def in_session(span: ReadableSpan, custom_id: str) -> bool:
    return attr(span, A.SESSION_CUSTOM_ID) == custom_id


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Otel]:
    monkeypatch.delenv("GALTEA_OTEL_CAPTURE_CONTENT", raising=False)
    monkeypatch.delenv("GALTEA_OTEL_MAX_VALUE_BYTES", raising=False)
    galtea_otel.stats.reset()
    provider = TracerProvider(shutdown_on_exit=False)
    memory, exported = InMemorySpanExporter(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    galtea_otel.configure(tracer_provider=provider, exporter=exported)
    yield Otel(provider, memory, exported)
    galtea_otel.shutdown()
