"""Context follows nested calls, asyncio tasks, asyncio.to_thread, and threads through the helpers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.sdk.trace import ReadableSpan

import galtea_otel
from galtea_otel import attributes as A
from tests.instrument.conftest import Otel, attr, loads


@galtea_otel.span(type="TOOL")
def tool(query: str) -> str:
    return f"result for {query}"


def orphans(otel: Otel, custom_id: str) -> list[ReadableSpan]:
    """Spans outside the session: not stamped with it, or in another trace than its session span."""
    (session,) = otel.named("galtea.session")
    return [s for s in otel.spans()
            if attr(s, A.SESSION_CUSTOM_ID) != custom_id or s.context.trace_id != session.context.trace_id]


def test_context_thread_pool_executor_keeps_tasks_in_the_session(otel: Otel) -> None:
    @galtea_otel.inference(name="agent")
    def agent(queries: list[str]) -> list[str]:
        with galtea_otel.ContextThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(tool, queries))
            results.append(pool.submit(tool, "extra").result())
        return results

    with galtea_otel.session(custom_id="threads", version="1"):
        assert agent(["a", "b", "c", "d"])[-1] == "result for extra"
    tools = otel.named("tool")
    assert len(tools) == 5
    agent_id = otel.one("agent").context.span_id
    assert all(t.parent is not None and t.parent.span_id == agent_id for t in tools)
    assert orphans(otel, "threads") == []


def test_a_plain_thread_pool_loses_the_session(otel: Otel) -> None:
    """Why the helpers exist: the same code on a plain executor makes orphan spans."""
    with galtea_otel.session(custom_id="plain", version="1"), ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(tool, "lost").result()
    assert len(orphans(otel, "plain")) == 1


def test_in_context_for_a_plain_thread(otel: Otel) -> None:
    with galtea_otel.session(custom_id="thread", version="1"):
        wrapped = galtea_otel.in_context(tool)
        workers = [threading.Thread(target=wrapped, args=(q,)) for q in ("x", "y")]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert wrapped.__name__ == "tool"
    assert len(otel.named("tool")) == 2
    assert orphans(otel, "thread") == []


async def test_asyncio_to_thread_gather_and_run_in_executor(otel: Otel) -> None:
    @galtea_otel.inference(name="turn")
    async def turn(i: int) -> str:
        found = await asyncio.to_thread(tool, f"q{i}")
        with otel.tracer.start_as_current_span(f"post-{i}"):
            await asyncio.sleep(0)
        return found

    async with galtea_otel.session(custom_id="async", version="1"):
        results = await asyncio.gather(*(turn(i) for i in range(4)))
        loop = asyncio.get_running_loop()
        with galtea_otel.ContextThreadPoolExecutor(max_workers=1) as pool:
            await loop.run_in_executor(pool, tool, "executor")
    assert results == [f"result for q{i}" for i in range(4)]
    assert len(otel.named("galtea.session")) == 1
    assert orphans(otel, "async") == []
    turns = {s.context.span_id for s in otel.named("turn")}
    assert len(turns) == 4
    for i in range(4):
        assert otel.one(f"post-{i}").parent.span_id in turns  # type: ignore[union-attr]


async def test_tasks_created_inside_a_session_stay_in_it(otel: Otel) -> None:
    async with galtea_otel.session(custom_id="tasks", version="1"):
        task = asyncio.create_task(asyncio.to_thread(tool, "background"))
    await task  # finishes after the session block: still stamped with it
    assert orphans(otel, "tasks") == []


def test_concurrent_sessions_in_threads_do_not_mix(otel: Otel) -> None:
    def conversation(n: int) -> None:
        with galtea_otel.session(custom_id=f"conv-{n}", version="1"):
            for _ in range(3):
                tool(f"{n}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(conversation, range(8)))
    tools = otel.named("tool")
    assert len(tools) == 24
    for span in tools:
        assert attr(span, A.SESSION_CUSTOM_ID) == f"conv-{loads(span, A.SPAN_INPUT)}"
