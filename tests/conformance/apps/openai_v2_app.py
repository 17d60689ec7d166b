"""openai-v2 (opentelemetry-instrumentation-openai-v2) with the newest GenAI conventions opted in, content on.

The instrumentation covers the OpenAI client's calls only: the app marks each turn with an application span
carrying ``gen_ai.conversation.id`` and ``user.id`` (the instrumentation has no session mechanism), and runs the
tool itself under an ``execute_tool`` span with the GenAI tool attributes.
"""

from __future__ import annotations

import json
import os

os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"

import openai
import producer_scenario as sc
from opentelemetry import trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

TOOLS = [{"type": "function", "function": {
    "name": sc.TOOL_NAME, "description": sc.TOOL_DESCRIPTION,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def main() -> None:
    provider = sc.otlp_provider("conformance-openai-v2")
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=sc.env(sc.ENV_OPENAI_BASE_URL), api_key="sk-conformance", max_retries=0)
    tracer = trace.get_tracer("conformance.app")
    history: list[dict[str, object]] = [{"role": "system", "content": sc.SYSTEM}]

    def handle(turn: sc.Turn, index: int) -> str:
        attributes = {"gen_ai.conversation.id": sc.env(sc.ENV_SESSION_ID), "user.id": sc.env(sc.ENV_USER_ID)}
        with tracer.start_as_current_span("handle_message", attributes=attributes):
            messages = [*history, {"role": "user", "content": turn.user}]
            if turn.kind == sc.STREAM:
                chunks = client.chat.completions.create(model=sc.MODEL, messages=messages, tools=TOOLS, stream=True,
                                                        stream_options={"include_usage": True})
                reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                while True:
                    response = client.chat.completions.create(model=sc.MODEL, messages=messages, tools=TOOLS)
                    message = response.choices[0].message
                    if not message.tool_calls:
                        reply = str(message.content)
                        break
                    messages.append(message.model_dump(exclude_none=True))
                    for call in message.tool_calls:
                        with tracer.start_as_current_span(f"execute_tool {call.function.name}", attributes={
                            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.function.name,
                            "gen_ai.tool.call.id": call.id, "gen_ai.tool.type": "function",
                            "gen_ai.tool.call.arguments": call.function.arguments,
                        }) as span:
                            result = sc.weather(**json.loads(call.function.arguments))
                            span.set_attribute("gen_ai.tool.call.result", result)
                        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            history.extend([{"role": "user", "content": turn.user}, {"role": "assistant", "content": reply}])
            return reply

    for line in sc.play(handle, openai.APIStatusError):
        print(line)
    provider.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
