"""Langfuse (v3+, OpenTelemetry-based): ``@observe`` around each turn, its OpenAI integration
(``langfuse.openai``, the real client patched) for the generation, ``propagate_attributes(session_id=...)``
for the conversation, and Langfuse's own OTLP exporter pointed at the receiver.
"""

from __future__ import annotations

import os

import scenario

# Langfuse exports OTLP/HTTP protobuf (gzip) to {base_url}/{LANGFUSE_OTEL_TRACES_EXPORT_PATH}.
os.environ["LANGFUSE_BASE_URL"] = scenario.env(scenario.ENV_OTLP_ENDPOINT).rstrip("/")
os.environ["LANGFUSE_OTEL_TRACES_EXPORT_PATH"] = "v1/traces"
os.environ.setdefault("LANGFUSE_PUBLIC_KEY", "pk-lf-conformance")
os.environ.setdefault("LANGFUSE_SECRET_KEY", "sk-lf-conformance")

from langfuse import Langfuse, observe, propagate_attributes
from langfuse.openai import OpenAI


def main() -> None:
    langfuse = Langfuse()
    client = scenario.openai_client(OpenAI)

    @observe(name="handle_message")
    def answer(messages: list[dict[str, str]], stream: bool) -> str:
        return scenario.complete(client, messages, stream)

    def handle(conversation_id: str, messages: list[dict[str, str]], stream: bool) -> str:
        with propagate_attributes(session_id=conversation_id):
            return answer(messages, stream)

    for line in scenario.play(handle):
        print(line)
    langfuse.flush()
    langfuse.shutdown()


if __name__ == "__main__":
    main()
