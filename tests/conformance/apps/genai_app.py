"""GenAI semantic conventions: opentelemetry-instrumentation-openai-v2, content on spans.

The conversation is marked with ``gen_ai.conversation.id`` on an application span around each turn (this
instrumentation release has no conversation-id mechanism of its own); the chat spans inherit it as children.
"""

from __future__ import annotations

import os

os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")

import scenario
from opentelemetry import trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor


def main() -> None:
    provider = scenario.otlp_provider("conformance-genai")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = scenario.openai_client()
    tracer = trace.get_tracer("conformance.app")

    def handle(conversation_id: str, messages: list[dict[str, str]], stream: bool) -> str:
        with tracer.start_as_current_span("handle_message", attributes={"gen_ai.conversation.id": conversation_id}):
            return scenario.complete(client, messages, stream)

    for line in scenario.play(handle):
        print(line)
    provider.shutdown()


if __name__ == "__main__":
    main()
