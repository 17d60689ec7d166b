"""LlamaIndex: a ``FunctionAgent`` (agent workflows) over llama-index-llms-openai, instrumented by
openinference-instrumentation-llama-index. The session and the end user are set as OpenInference's docs
recommend, with ``using_attributes(session_id=..., user_id=...)`` around each turn; the agent's ``Context``
keeps the conversation's memory between turns.
"""

from __future__ import annotations

import asyncio

import producer_scenario as sc
from llama_index.core.agent.workflow import AgentStream, FunctionAgent
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context
from llama_index.llms.openai import OpenAI
from openinference.instrumentation import using_attributes
from openinference.instrumentation.llama_index import LlamaIndexInstrumentor


async def main() -> None:
    provider = sc.otlp_provider("conformance-llama-index")
    LlamaIndexInstrumentor().instrument(tracer_provider=provider)
    llm = OpenAI(model=sc.MODEL, api_base=sc.env(sc.ENV_OPENAI_BASE_URL), api_key="sk-conformance", max_retries=0)
    tool = FunctionTool.from_defaults(fn=sc.weather, name=sc.TOOL_NAME, description=sc.TOOL_DESCRIPTION)
    agent = FunctionAgent(tools=[tool], llm=llm, system_prompt=sc.SYSTEM)
    ctx = Context(agent)
    log: list[str] = []
    for index, turn in enumerate(sc.TURNS):
        try:
            with using_attributes(session_id=sc.env(sc.ENV_SESSION_ID), user_id=sc.env(sc.ENV_USER_ID)):
                handler = agent.run(turn.user, ctx=ctx)
                if turn.kind == sc.STREAM:
                    pieces = [event.delta async for event in handler.stream_events() if isinstance(event, AgentStream)]
                    result = await handler
                    reply = "".join(pieces)
                    assert reply == str(result), (reply, str(result))
                else:
                    reply = str(await handler)
        except Exception as exc:  # the failed turn: the app survives it
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
