"""Capture switches, the redaction hook, the size limit, internal errors that never reach the application."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel import attributes as A
from galtea_otel.instrument.capture import REDACTION_FAILED
from tests.instrument.conftest import Otel, attr, loads

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@galtea_otel.inference(name="echo")
def echo(prompt: str) -> str:
    return f"you said {prompt}"


def reconfigure(otel: Otel, **kwargs: object) -> None:
    galtea_otel.configure(tracer_provider=otel.provider, exporter=InMemorySpanExporter(), **kwargs)  # type: ignore[arg-type]


def test_capture_switch_per_decorator(otel: Otel) -> None:
    @galtea_otel.inference(name="no-in", capture_input=False)
    def no_in(x: str) -> str:
        return x

    @galtea_otel.inference(name="no-out", capture_output=False)
    def no_out(x: str) -> str:
        return x

    no_in("a"), no_out("b")
    assert attr(otel.one("no-in"), A.SPAN_INPUT) is None and loads(otel.one("no-in"), A.SPAN_OUTPUT) == "a"
    assert loads(otel.one("no-out"), A.SPAN_INPUT) == "b" and attr(otel.one("no-out"), A.SPAN_OUTPUT) is None


def test_capture_switch_global_by_configure(otel: Otel) -> None:
    reconfigure(otel, capture_content=False)
    echo("secret")
    with galtea_otel.inference(name="cm") as inv:
        inv.set_input("also secret")
    span = otel.one("echo")
    assert attr(span, A.SPAN_INPUT) is None and attr(span, A.SPAN_OUTPUT) is None
    assert attr(span, A.SPAN_TYPE) == A.TYPE_GENERATION  # the span itself is still recorded
    assert attr(otel.one("cm"), A.SPAN_INPUT) is None


def test_capture_switch_global_by_environment(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALTEA_OTEL_CAPTURE_CONTENT", "false")
    reconfigure(otel)
    echo("secret")
    assert attr(otel.one("echo"), A.SPAN_INPUT) is None
    monkeypatch.setenv("GALTEA_OTEL_CAPTURE_CONTENT", "true")
    reconfigure(otel, capture_content=False)  # the argument wins over the variable
    echo("secret")
    assert attr(otel.named("echo")[1], A.SPAN_INPUT) is None


def test_environment_read_at_import_in_a_fresh_process() -> None:
    script = textwrap.dedent("""
        import json
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import galtea_otel
        provider, memory = TracerProvider(), InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        galtea_otel.configure(tracer_provider=provider, exporter=InMemorySpanExporter())
        galtea_otel.inference(lambda prompt: prompt * 1000)("abc")
        (span,) = memory.get_finished_spans()
        print(json.dumps({k: span.attributes.get(k) for k in ("galtea.span.input", "galtea.span.output")}))
    """)
    env = {**os.environ, "GALTEA_OTEL_CAPTURE_CONTENT": "0", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"galtea.span.input": None, "galtea.span.output": None}
    env = {**os.environ, "GALTEA_OTEL_MAX_VALUE_BYTES": "300", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    captured = json.loads(out.stdout)
    assert json.loads(captured["galtea.span.input"]) == "abc"
    assert len(captured["galtea.span.output"].encode()) <= 300
    assert "truncated" in json.loads(captured["galtea.span.output"])


def test_redaction_hook_sees_every_captured_text(otel: Otel) -> None:
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("4111-1111", "[card]")

    reconfigure(otel, redact=redact)
    with galtea_otel.session(custom_id="c", version="1", metadata={"card": "4111-1111"}):
        echo("my card is 4111-1111")
    span = otel.one("echo")
    assert loads(span, A.SPAN_INPUT) == "my card is [card]"
    assert loads(span, A.SPAN_OUTPUT) == "you said my card is [card]"
    assert loads(otel.one("galtea.session"), A.SESSION_METADATA) == {"card": "[card]"}
    assert loads(otel.one("galtea.session.start"), A.SESSION_METADATA) == {"card": "[card]"}
    assert seen == ['{"card":"4111-1111"}', '"my card is 4111-1111"', '"you said my card is 4111-1111"']


def test_a_raising_redaction_hook_drops_the_value_and_never_raises(otel: Otel) -> None:
    def redact(text: str) -> str:
        raise RuntimeError("hook bug")

    reconfigure(otel, redact=redact)
    assert echo("hi") == "you said hi"
    span = otel.one("echo")
    assert attr(span, A.SPAN_INPUT) == REDACTION_FAILED and attr(span, A.SPAN_OUTPUT) == REDACTION_FAILED
    counters = galtea_otel.stats()
    assert counters["redaction_failures"] == 2 and counters["internal_errors.redact"] == 2


def test_a_redaction_hook_returning_a_non_string_is_a_failure(otel: Otel) -> None:
    reconfigure(otel, redact=lambda text: None)  # type: ignore[arg-type, return-value]
    echo("hi")
    assert attr(otel.one("echo"), A.SPAN_INPUT) == REDACTION_FAILED


def test_an_unrepresentable_value_never_reaches_the_application(otel: Otel) -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("repr bug")

    @galtea_otel.inference(name="weird")
    def weird(x: Weird) -> Weird:
        return x

    value = Weird()
    assert weird(value) is value
    assert loads(otel.one("weird"), A.SPAN_INPUT) == "<unrepresentable Weird>"


def test_large_values_are_truncated_to_valid_json(otel: Otel) -> None:
    reconfigure(otel, max_value_bytes=1024)

    @galtea_otel.inference(name="big")
    def big(items: list[str]) -> str:
        return "é" * 5000

    big(["x" * 100] * 100)
    span = otel.one("big")
    for key in (A.SPAN_INPUT, A.SPAN_OUTPUT):
        text = attr(span, key)
        assert len(text.encode()) <= 1024
        json.loads(text)
    assert loads(span, A.SPAN_INPUT)["galtea.truncated"] is True
    assert loads(span, A.SPAN_OUTPUT).endswith("bytes]")
    assert galtea_otel.stats()["truncations"] == 2


def test_configure_validates_its_arguments(otel: Otel) -> None:
    with pytest.raises(TypeError):
        reconfigure(otel, redact="not callable")
    with pytest.raises(ValueError):
        reconfigure(otel, max_value_bytes=10)
    with pytest.raises(ValueError):
        galtea_otel.configure("sqlite:///x.db", tracer_provider=otel.provider,
                              exporter=InMemorySpanExporter())


def test_sdk_attribute_length_limit_lowers_ours() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    from galtea_otel.config import current

    provider = TracerProvider(span_limits=SpanLimits(max_attribute_length=500), shutdown_on_exit=False)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    galtea_otel.configure(tracer_provider=provider, exporter=InMemorySpanExporter())
    try:
        assert current().max_value_bytes == 500
        galtea_otel.inference(name="long")(lambda: {"k": "v" * 2000})()
        (span,) = memory.get_finished_spans()
        json.loads(span.attributes[A.SPAN_OUTPUT])  # type: ignore[index]  # the SDK did not cut our JSON
    finally:
        galtea_otel.shutdown()
