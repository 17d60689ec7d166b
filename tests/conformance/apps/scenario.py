"""The conversation every conformance app plays, and the plumbing the apps share.

Imported by the app scripts (as ``scenario``, from their own folder) and by the tests (as
``tests.conformance.apps.scenario``): the tests derive what they expect from the same data.

An app is told by environment variables where the fake OpenAI server and the receiver are and which
conversation ids to use. It plays :data:`MAIN` (three plain turns with a growing history, a streaming turn and a
turn the server fails with HTTP 500, caught by the app) and, after the first main turn, :data:`OTHER` (one turn of
a second conversation, so that sessions must be told apart).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENV_OPENAI_BASE_URL = "CONFORMANCE_OPENAI_BASE_URL"
ENV_OTLP_ENDPOINT = "CONFORMANCE_OTLP_ENDPOINT"  # http://127.0.0.1:PORT (the receiver's HTTP base)
ENV_MAIN_ID = "CONFORMANCE_MAIN_ID"
ENV_OTHER_ID = "CONFORMANCE_OTHER_ID"

MODEL = "gpt-4o-mini"
PLAIN, STREAM, FAIL = "plain", "stream", "fail"


@dataclass(frozen=True)
class Turn:
    user: str
    kind: str = PLAIN


MAIN = (
    Turn("What is the capital of France?"),
    Turn("And what about Spain?"),
    Turn("Which of the two cities is larger?"),
    Turn("Tell me a short story about both, streamed please.", STREAM),
    Turn("Now FAIL on purpose, please.", FAIL),
)
OTHER = (Turn("Hello from a second, unrelated conversation."),)
OTHER_AFTER_MAIN_TURN = 0  # the OTHER conversation's turn is played right after this MAIN turn


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: this app is started by tests/conformance")
    return value


def traces_endpoint() -> str:
    return env(ENV_OTLP_ENDPOINT).rstrip("/") + "/v1/traces"


def otlp_provider(service_name: str) -> Any:
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


def openai_client(cls: Any = None) -> Any:
    """The real openai client (or a drop-in subclass such as langfuse's) pointed at the fake server."""
    if cls is None:
        import openai

        cls = openai.OpenAI
    return cls(base_url=env(ENV_OPENAI_BASE_URL), api_key="sk-conformance", max_retries=0)


def complete(client: Any, messages: list[dict[str, str]], stream: bool) -> str:
    """One chat completion through the real client; a stream is consumed to its end and joined."""
    if not stream:
        response = client.chat.completions.create(model=MODEL, messages=list(messages))
        return str(response.choices[0].message.content)
    chunks = client.chat.completions.create(
        model=MODEL, messages=list(messages), stream=True, stream_options={"include_usage": True})
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


# handle(conversation_id, messages, stream) -> the assistant's reply; the app marks the conversation its own way.
Handler = Callable[[str, list[dict[str, str]], bool], str]


def play(handle: Handler) -> list[str]:
    """Play MAIN and OTHER through ``handle``; a failed turn is caught (as an app would) and reported."""
    import openai

    main_id, other_id = env(ENV_MAIN_ID), env(ENV_OTHER_ID)
    histories: dict[str, list[dict[str, str]]] = {main_id: [], other_id: []}
    log: list[str] = []

    def one(conversation_id: str, turn: Turn) -> None:
        history = histories[conversation_id]
        history.append({"role": "user", "content": turn.user})
        try:
            reply = handle(conversation_id, list(history), turn.kind == STREAM)
        except openai.APIStatusError as exc:  # the FAIL turn: the app survives it
            log.append(f"{conversation_id}: failed: {exc.status_code}")
            history.pop()
            return
        history.append({"role": "assistant", "content": reply})
        log.append(f"{conversation_id}: {reply}")

    for index, turn in enumerate(MAIN):
        one(main_id, turn)
        if index == OTHER_AFTER_MAIN_TURN:
            for other in OTHER:
                one(other_id, other)
    return log
