"""The conversation every producer app plays (tests/conformance/test_producers.py), and what they share.

Three turns of one conversation, each its own trace: a question the model answers by calling the weather tool
(LLM -> tool -> LLM: one user turn), a streamed answer, and a call the fake server fails with HTTP 500, caught by
the app. The Node app gets the same data as JSON in ``CONFORMANCE_TURNS``.

Stdlib only: it is imported by apps running in the producers' own virtual environments.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

ENV_OPENAI_BASE_URL = "CONFORMANCE_OPENAI_BASE_URL"
ENV_OTLP_ENDPOINT = "CONFORMANCE_OTLP_ENDPOINT"  # http://127.0.0.1:PORT (the receiver's HTTP base)
ENV_SESSION_ID = "CONFORMANCE_SESSION_ID"
ENV_USER_ID = "CONFORMANCE_USER_ID"
ENV_TURNS = "CONFORMANCE_TURNS"

MODEL = "gpt-4o-mini"
SYSTEM = "You are a concise assistant. Use the weather tool for questions about the weather."
TOOL, STREAM, FAIL = "tool", "stream", "fail"
TOOL_NAME = "get_weather"
TOOL_DESCRIPTION = "The current weather in a city."


@dataclass(frozen=True)
class Turn:
    user: str
    kind: str


TURNS = (
    Turn("What is the weather in Paris today?", TOOL),
    Turn("Tell me a short story about Paris, streamed please.", STREAM),
    Turn("Now FAIL on purpose, please.", FAIL),
)


def weather(city: str) -> str:
    """The tool every app registers (the fake calls it with city=Paris)."""
    return f"Sunny and 22 degrees in {city}."


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: this app is started by tests/conformance")
    return value


def traces_endpoint() -> str:
    return env(ENV_OTLP_ENDPOINT).rstrip("/") + "/v1/traces"


def turns_json() -> str:
    return json.dumps([asdict(t) for t in TURNS])


def otlp_provider(service_name: str) -> object:
    """A TracerProvider exporting OTLP/HTTP protobuf to the receiver, made the global one."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint(), timeout=30)))
    trace.set_tracer_provider(provider)
    return provider


def play(handle: object, failure: type[BaseException] | tuple[type[BaseException], ...]) -> list[str]:
    """Play TURNS through ``handle(turn, index) -> reply``; the failed turn's ``failure`` is caught, as an app
    would, and reported. Returns one log line per turn."""
    log: list[str] = []
    for index, turn in enumerate(TURNS):
        try:
            reply = handle(turn, index)  # type: ignore[operator]
        except failure as exc:
            if turn.kind != FAIL:
                raise
            log.append(f"turn {index}: failed: {type(exc).__name__}")
            continue
        if turn.kind == FAIL:
            raise SystemExit(f"turn {index} should have failed, got {reply!r}")
        log.append(f"turn {index}: {reply}")
    return log
