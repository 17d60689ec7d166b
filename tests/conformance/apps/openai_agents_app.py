"""The OpenAI Agents SDK (openai-agents) on the Chat Completions API, instrumented by
openinference-instrumentation-openai-agents (exclusive: no export to the OpenAI platform). Each turn is one
``Runner.run`` inside the SDK's ``trace(..., group_id=<conversation>)`` (how the SDK groups a conversation), with
OpenInference's ``using_attributes(session_id=..., user_id=...)`` as its docs recommend for sessions; an SDK
``SQLiteSession`` keeps the conversation's memory.
"""

from __future__ import annotations

import asyncio

import openai
import producer_scenario as sc
from agents import (
    Agent,
    Runner,
    SQLiteSession,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    trace,
)
from openinference.instrumentation import using_attributes
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor


@function_tool(name_override=sc.TOOL_NAME, description_override=sc.TOOL_DESCRIPTION)
def get_weather(city: str) -> str:
    return sc.weather(city)


async def main() -> None:
    provider = sc.otlp_provider("conformance-openai-agents")
    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
    set_default_openai_client(openai.AsyncOpenAI(base_url=sc.env(sc.ENV_OPENAI_BASE_URL), api_key="sk-conformance",
                                                 max_retries=0), use_for_tracing=False)
    set_default_openai_api("chat_completions")
    agent = Agent(name="Assistant", instructions=sc.SYSTEM, model=sc.MODEL, tools=[get_weather])
    session_id = sc.env(sc.ENV_SESSION_ID)
    memory = SQLiteSession(session_id)
    log: list[str] = []
    for index, turn in enumerate(sc.TURNS):
        try:
            with using_attributes(session_id=session_id, user_id=sc.env(sc.ENV_USER_ID)), \
                    trace("conformance-chat", group_id=session_id):
                if turn.kind == sc.STREAM:
                    streamed = Runner.run_streamed(agent, turn.user, session=memory)
                    pieces = [event.data.delta async for event in streamed.stream_events()
                              if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"]
                    reply = "".join(pieces)
                    assert reply == streamed.final_output, (reply, streamed.final_output)
                else:
                    reply = str((await Runner.run(agent, turn.user, session=memory)).final_output)
        except openai.APIStatusError as exc:  # the failed turn: the app survives it
            if turn.kind != sc.FAIL:
                raise
            log.append(f"turn {index}: failed: {type(exc).__name__}")
            continue
        if turn.kind == sc.FAIL:
            raise SystemExit(f"turn {index} should have failed, got {reply!r}")
        log.append(f"turn {index}: {reply}")
    for line in log:
        print(line)
    provider.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
