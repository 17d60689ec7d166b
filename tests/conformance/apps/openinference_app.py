"""OpenInference: openinference-instrumentation-openai, the conversation marked with ``using_session``."""

from __future__ import annotations

import scenario
from openinference.instrumentation import using_session
from openinference.instrumentation.openai import OpenAIInstrumentor


def main() -> None:
    provider = scenario.otlp_provider("conformance-openinference")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = scenario.openai_client()

    def handle(conversation_id: str, messages: list[dict[str, str]], stream: bool) -> str:
        with using_session(conversation_id):
            return scenario.complete(client, messages, stream)

    for line in scenario.play(handle):
        print(line)
    provider.shutdown()


if __name__ == "__main__":
    main()
