"""LangChain 1.x: an agent (``langchain.agents.create_agent``, on LangGraph) over langchain-openai's ChatOpenAI,
instrumented by openinference-instrumentation-langchain. The session and the end user are set as OpenInference's
docs recommend, with ``using_attributes(session_id=..., user_id=...)`` around each turn.
"""

from __future__ import annotations

from typing import Any

import openai
import producer_scenario as sc
from langchain.agents import create_agent
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openinference.instrumentation import using_attributes
from openinference.instrumentation.langchain import LangChainInstrumentor


@tool(sc.TOOL_NAME, description=sc.TOOL_DESCRIPTION)
def get_weather(city: str) -> str:
    return sc.weather(city)


def main() -> None:
    provider = sc.otlp_provider("conformance-langchain")
    LangChainInstrumentor().instrument(tracer_provider=provider)
    llm = ChatOpenAI(model=sc.MODEL, base_url=sc.env(sc.ENV_OPENAI_BASE_URL), api_key="sk-conformance",
                     max_retries=0, stream_usage=True)
    agent: Any = create_agent(model=llm, tools=[get_weather], system_prompt=sc.SYSTEM)
    history: list[BaseMessage] = []

    def handle(turn: sc.Turn, index: int) -> str:
        state = {"messages": [*history, {"role": "user", "content": turn.user}]}
        with using_attributes(session_id=sc.env(sc.ENV_SESSION_ID), user_id=sc.env(sc.ENV_USER_ID)):
            if turn.kind == sc.STREAM:
                pieces: list[str] = []
                final: dict[str, Any] = {}
                for mode, data in agent.stream(state, stream_mode=["messages", "values"]):
                    if mode == "messages" and isinstance(data[0], AIMessageChunk):
                        pieces.append(data[0].text)
                    elif mode == "values":
                        final = data
                history[:] = final["messages"]
                return "".join(pieces)
            result = agent.invoke(state)
        history[:] = result["messages"]
        return str(result["messages"][-1].text)

    for line in sc.play(handle, openai.APIStatusError):
        print(line)
    provider.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
