"""The official Galtea SDK: ``@traced(type="GENERATION")`` around the LLM call.

The SDK has no OpenTelemetry-side session mechanism: its sessions and turns are REST entities, and its spans go to
the Galtea API by its own processor (``galtea.inference_result.id`` correlation, set by ``set_context``). Its way
to put a raw attribute on a span is ``start_span(..., attributes=...)``; the conversation is marked there with
``galtea.session.custom_id``, the key the Galtea platform's own OTLP ingestion reads first. Without a ``Galtea()``
client no span goes to the Galtea API; the app's provider exports them over OTLP instead.

``@traced`` records no model or tokens, so the chat call is also instrumented (GenAI conventions, no content):
its span, nested in the GENERATION span, fills the turn's model and tokens.
"""

from __future__ import annotations

import scenario
from galtea import start_span, traced
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor


def main() -> None:
    provider = scenario.otlp_provider("conformance-galtea")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = scenario.openai_client()

    @traced(name="answer", type="GENERATION")
    def answer(messages: list[dict[str, str]], stream: bool) -> str:
        return scenario.complete(client, messages, stream)

    def handle(conversation_id: str, messages: list[dict[str, str]], stream: bool) -> str:
        with start_span("handle_message", type="AGENT", attributes={"galtea.session.custom_id": conversation_id}):
            return answer(messages, stream)

    for line in scenario.play(handle):
        print(line)
    provider.shutdown()


if __name__ == "__main__":
    main()
