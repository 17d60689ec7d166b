"""OpenLLMetry: opentelemetry-instrumentation-openai (traceloop).

The conversation is marked the way ``Traceloop.set_association_properties({"session_id": ...})`` marks it, with
the attribute ``traceloop.association.properties.session_id``, here on a workflow span around each turn: the
traceloop-sdk (which would stamp it from context) pulls in some forty other instrumentations and is not installed.
"""

from __future__ import annotations

import scenario
from opentelemetry import trace
from opentelemetry.instrumentation.openai import OpenAIInstrumentor


def main() -> None:
    provider = scenario.otlp_provider("conformance-openllmetry")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = scenario.openai_client()
    tracer = trace.get_tracer("conformance.app")

    def handle(conversation_id: str, messages: list[dict[str, str]], stream: bool) -> str:
        attributes = {
            "traceloop.span.kind": "workflow",
            "traceloop.entity.name": "handle_message",
            "traceloop.association.properties.session_id": conversation_id,
        }
        with tracer.start_as_current_span("handle_message.workflow", attributes=attributes):
            return scenario.complete(client, messages, stream)

    for line in scenario.play(handle):
        print(line)
    provider.shutdown()


if __name__ == "__main__":
    main()
