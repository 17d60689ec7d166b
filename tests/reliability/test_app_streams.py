"""RELIABILITY 17: an abandoned stream (a consumer that breaks out early, or never finishes) still ends its
inference span exactly once, with the output seen so far, and no "Failed to detach context" noise; checked in
the store the real exporter wrote."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import galtea_otel
from galtea_otel.pipeline import read_session
from galtea_otel.store import open_store
from tests.reliability.apps.instrumented import App, instrumented


@pytest.fixture
def app(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[App]:
    caplog.set_level(logging.DEBUG)
    with instrumented(tmp_path / "app.db") as running:
        yield running
    noise = [r.getMessage() for r in caplog.records if "detach" in r.getMessage().lower()
             or (r.name.startswith("galtea_otel") and r.levelno >= logging.WARNING)]
    assert noise == []


@galtea_otel.inference(name="words", model="fake-1")
def words(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"w{i} "


@galtea_otel.inference(name="async-words", model="fake-1")
async def async_words(n: int) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(0)
        yield f"a{i} "


def turns(app: App, custom_id: str) -> list[tuple[str | None, bool]]:
    store = open_store(f"sqlite:///{app.db}")
    try:
        detail = read_session(store, (custom_id, "1"))
    finally:
        store.close()
    assert detail is not None
    return [(t.output, t.abandoned) for t in detail.inference_results]


def test_a_consumer_that_breaks_out_early(app: App) -> None:
    with galtea_otel.session(custom_id="break", version="1"):
        for word in words(10):
            if word == "w2 ":
                break
    app.flush()
    assert turns(app, "break") == [("w0 w1 w2 ", True)]
    assert app.ends.named("words") == [1]


def test_a_stream_never_finished_ends_when_collected(app: App) -> None:
    with galtea_otel.session(custom_id="never", version="1"):
        holder: dict[str, Any] = {"stream": words(10)}
        holder["cycle"] = holder  # only the cycle collector frees it, later, outside the session block
        next(holder["stream"])
        del holder
    gc.collect()
    app.flush()
    assert turns(app, "never") == [("w0 ", True)]
    assert app.ends.named("words") == [1]


async def test_an_async_consumer_cancelled_mid_stream(app: App) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in async_words(1000):
            started.set()
            await asyncio.sleep(3600)  # stuck waiting on something else: cancelled here

    async with galtea_otel.session(custom_id="cancelled", version="1"):
        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(3):  # the loop finalises the abandoned async generator (aclose) on a later step
        gc.collect()
        await asyncio.sleep(0)
    app.flush()
    assert turns(app, "cancelled") == [("a0 ", True)]
    assert app.ends.named("async-words") == [1]


async def test_an_async_stream_broken_out_of_and_dropped(app: App) -> None:
    async with galtea_otel.session(custom_id="async-break", version="1"):
        async for word in async_words(10):
            if word == "a1 ":
                break
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0)
    app.flush()
    assert turns(app, "async-break") == [("a0 a1 ", True)]
    assert app.ends.named("async-words") == [1]
