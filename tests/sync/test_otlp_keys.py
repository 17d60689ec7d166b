"""galtea-otel's own spans carry exactly the keys the Galtea platform's OTLP ingestion reads (the direct-OTLP
alternative to the sync): checked on real spans recorded by galtea-otel's instrumentation."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from galtea.infrastructure.telemetry import attributes as sdk_attributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel.sync import otlp


@pytest.fixture
def recorded() -> Iterator[list[ReadableSpan]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"galtea.version.id": "ver_123"}), shutdown_on_exit=False)
    galtea_otel.configure(tracer_provider=provider, exporter=exporter, schedule_delay_millis=10)
    galtea_otel.register_test_cases([{"id": "tc-1", "input": "q", "context": "ctx"}])

    @galtea_otel.inference(model="m-1")
    def chat(prompt: str) -> str:
        with galtea_otel.span("lookup", type="TOOL"):
            pass
        if prompt == "boom":
            raise RuntimeError("backend down")
        return f"answer to {prompt}"

    with galtea_otel.session(custom_id="conv-otlp", version="1.0"):
        chat("hello")
    with pytest.raises(RuntimeError), galtea_otel.session(custom_id="conv-eval", version="1.0",
                                                          test_case_id="tc-1", is_production=False):
        chat("boom")
    assert galtea_otel.flush()
    yield list(exporter.get_finished_spans())
    galtea_otel.shutdown()


def test_the_keys_are_the_ones_the_sdk_mirrors_from_the_api() -> None:
    assert otlp.TEST_CASE_KEY == sdk_attributes.GALTEA_ATTR_TEST_CASE_ID
    # The API reads galtea.span.* as the current spelling of the SDK's galtea.trace.* keys.
    for name in ("TYPE", "DESCRIPTION", "INPUT", "OUTPUT", "ERROR", "METADATA"):
        old = getattr(sdk_attributes, f"GALTEA_ATTR_TRACE_{name}")
        assert old.replace("galtea.trace.", "galtea.span.") in otlp.INGESTION_READS


def test_spans_carry_exactly_the_keys_ingestion_reads(recorded: list[ReadableSpan]) -> None:
    galtea_keys = {k for s in recorded for k in (s.attributes or {}) if k.startswith("galtea.")}
    assert galtea_keys <= otlp.INGESTION_READS | otlp.GALTEA_OTEL_ONLY, galtea_keys - otlp.INGESTION_READS
    # Every span of a conversation names it, with the key ingestion reads first.
    for span in recorded:
        attributes = dict(span.attributes or {})
        assert attributes.get("galtea.session.custom_id") in ("conv-otlp", "conv-eval"), span.name
        assert attributes["gen_ai.conversation.id"] == attributes["galtea.session.custom_id"]
        assert span.resource.attributes.get(otlp.RESOURCE_VERSION_KEY) == "ver_123"
    by_type: dict[str, list[dict[str, object]]] = {}
    for span in recorded:
        attributes = dict(span.attributes or {})
        by_type.setdefault(str(attributes.get("galtea.span.type")), []).append(attributes)
    [failed, generation] = sorted(by_type["GENERATION"], key=lambda a: str(a.get("galtea.span.input")))
    assert json.loads(str(generation["galtea.span.input"])) == "hello"
    assert json.loads(str(generation["galtea.span.output"])) == "answer to hello"
    assert "backend down" in str(failed["galtea.span.error"])
    assert len(by_type["TOOL"]) == 2  # a non-LLM span: its type is what ingestion reads
    sessions = [a for a in by_type["SESSION"] if a.get("galtea.test_case.id")]
    assert sessions and all(a["galtea.test_case.id"] == "tc-1" for a in sessions)
