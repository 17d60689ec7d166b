"""What the atheris targets found, kept as plain tests (they run without atheris)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galtea_otel import attributes as A
from galtea_otel.decode.otlp_proto import decode_proto
from galtea_otel.translate.translator import translate


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON: {text}")

    return json.loads(text, parse_constant=refuse)


def _body(attributes: dict[str, Any]) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s", attributes=attributes):
        pass
    provider.shutdown()
    return bytes(encode_spans(exporter.get_finished_spans()).SerializeToString())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_metadata_stays_strict_json_with_non_finite_doubles_in_arrays(value: float) -> None:
    """Found by the ``pipeline`` target: an array of doubles holding NaN (one byte flipped in a real SDK body)
    gave span metadata ``{"llm.scores": [0.5, NaN]}``, not JSON; the Galtea sync (httpx, ``allow_nan=False``)
    could not send it. Non-finite doubles are kept as text, at any depth."""
    body = _body({"llm.scores": (0.5, value), "top": value, A.SESSION_METADATA: '{"plan": NaN, "n": [Infinity]}'})
    (span,) = decode_proto(body).spans
    row = translate(span)
    assert row.metadata is not None
    metadata = _strict(row.metadata)
    assert metadata["llm.scores"] == [0.5, str(value)]
    assert metadata["top"] == str(value)
    assert metadata["plan"] == "nan" and metadata["n"] == ["inf"]
