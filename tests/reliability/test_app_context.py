"""RELIABILITY 15: 8 tool calls in a thread pool and 8 through ``asyncio.to_thread`` inside one session give
1 session and 0 orphan traces, checked in the store the real exporter wrote, not only in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import galtea_otel
from tests.reliability.apps.instrumented import App, instrumented


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    with instrumented(tmp_path / "app.db") as running:
        yield running


@galtea_otel.span(type="TOOL")
def tool(n: int) -> str:
    return f"tool {n}"


async def test_tool_calls_in_threads_and_to_thread_stay_in_one_session(app: App) -> None:
    @galtea_otel.inference(name="agent", model="fake-1")
    async def agent() -> list[str]:
        with galtea_otel.ContextThreadPoolExecutor(max_workers=4) as pool:
            pooled = list(pool.map(tool, range(8)))
        threaded = await asyncio.gather(*(asyncio.to_thread(tool, 8 + n) for n in range(8)))
        return pooled + list(threaded)

    async with galtea_otel.session(custom_id="tools", version="1"):
        assert await agent() == [f"tool {n}" for n in range(16)]
    app.flush()

    assert app.sessions() == [("tools", "COMPLETED", 1)]
    assert app.orphan_traces() == 0
    assert app.query("SELECT count(DISTINCT trace_id), count(*) FROM spans") == [(1, 19)]  # 16 + agent + 2
    tools = app.query(
        "SELECT count(*) FROM spans t JOIN spans a ON t.parent_span_id = a.span_id AND t.trace_id = a.trace_id "
        "WHERE t.name = 'tool' AND a.name = 'agent' AND t.custom_id = 'tools'")
    assert tools == [(16,)]


def test_a_plain_thread_pool_makes_an_orphan_trace_in_the_store(app: App) -> None:
    """What the check above would catch: a plain executor loses the session's context."""
    with galtea_otel.session(custom_id="plain", version="1"), ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(tool, 1).result()
    app.flush()
    assert app.orphan_traces() == 1
