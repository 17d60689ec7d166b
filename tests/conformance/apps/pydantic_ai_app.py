"""pydantic-ai 2.x instrumented by its own OpenTelemetry support (``Agent.instrument_all()``), OpenAI chat model.

The app marks each turn with a span carrying ``session.id`` and ``user.id`` around ``agent.run``; pydantic-ai
puts its own ``gen_ai.conversation.id`` (a UUID it generates and carries on the message history) on the spans
below, which must not win over the app's key.
"""

from __future__ import annotations

import asyncio

import openai
import producer_scenario as sc
from opentelemetry import trace
from pydantic_ai import Agent, InstrumentationSettings
from pydantic_ai.exceptions import ModelAPIError
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


async def main() -> None:
    provider = sc.otlp_provider("conformance-pydantic-ai")
    Agent.instrument_all(InstrumentationSettings(tracer_provider=provider, include_content=True))  # type: ignore[arg-type]
    client = openai.AsyncOpenAI(base_url=sc.env(sc.ENV_OPENAI_BASE_URL), api_key="sk-conformance", max_retries=0)
    model = OpenAIChatModel(sc.MODEL, provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, instructions=sc.SYSTEM)

    @agent.tool_plain(name=sc.TOOL_NAME, description=sc.TOOL_DESCRIPTION)
    def get_weather(city: str) -> str:
        return sc.weather(city)

    tracer = trace.get_tracer("conformance.app")
    history: list[ModelMessage] = []
    replies: list[str] = []

    async def turn(item: sc.Turn) -> str:
        attributes = {"session.id": sc.env(sc.ENV_SESSION_ID), "user.id": sc.env(sc.ENV_USER_ID)}
        with tracer.start_as_current_span("handle_message", attributes=attributes):
            if item.kind == sc.STREAM:
                async with agent.run_stream(item.user, message_history=history) as result:
                    reply = "".join([piece async for piece in result.stream_text(delta=True)])
                    history[:] = result.all_messages()
                return reply
            done = await agent.run(item.user, message_history=history)
            history[:] = done.all_messages()
            return done.output

    for index, item in enumerate(sc.TURNS):
        try:
            replies.append(f"turn {index}: {await turn(item)}")
        except ModelAPIError as exc:
            if item.kind != sc.FAIL:
                raise
            replies.append(f"turn {index}: failed: {type(exc).__name__}")
    for line in replies:
        print(line)
    provider.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
