"""The whole in-process path: decorators -> real BatchSpanProcessor -> SessionExporter -> SQLite file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import galtea_otel
from galtea_otel.pipeline import read_session
from galtea_otel.store import open_store
from galtea_otel.store.base import Store


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    provider = TracerProvider(shutdown_on_exit=False)
    galtea_otel.configure(url, tracer_provider=provider)
    yield url
    galtea_otel.shutdown()


def _store(url: str) -> Store:
    return open_store(url)


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    with galtea_otel.span("lookup", type="TOOL"):
        pass
    galtea_otel.record_usage(input_tokens=len(prompt), output_tokens=3, cost=0.5)
    return f"answer to {prompt}"


def test_a_conversation_becomes_a_completed_session_with_its_turns(store_url: str) -> None:
    with galtea_otel.session(custom_id="conv-1", version="1.4.0", metadata={"channel": "web"}):
        chat("hello")
        chat("how are you")
    assert galtea_otel.flush()
    store = _store(store_url)
    [summary] = store.list_sessions()
    assert (summary.custom_id, summary.version, summary.status, summary.turn_count) == (
        "conv-1", "1.4.0", "COMPLETED", 2)
    detail = read_session(store, ("conv-1", "1.4.0"))
    assert detail is not None
    assert detail.metadata == {"channel": "web"}
    turns = detail.inference_results
    assert [(t.input, t.output, t.model) for t in turns] == [
        ("hello", "answer to hello", "fake-1"), ("how are you", "answer to how are you", "fake-1")]
    assert [(t.input_tokens, t.output_tokens, t.total_tokens, t.cost) for t in turns] == [
        (5, 3, 8, 0.5), (11, 3, 14, 0.5)]
    assert all(t.latency_ms > 0 for t in turns)
    assert [[s.name for s in t.spans] for t in turns] == [["lookup"], ["lookup"]]
    assert detail.cost == 1.0 and detail.total_tokens == 22


def test_pending_is_visible_while_the_session_runs(store_url: str) -> None:
    with galtea_otel.session(custom_id="live", version="1"):
        chat("first")
        assert galtea_otel.flush()
        running = _store(store_url).list_sessions()
        assert [(s.status, s.turn_count) for s in running] == [("PENDING", 1)]
    assert galtea_otel.flush()
    assert [s.status for s in _store(store_url).list_sessions()] == ["COMPLETED"]


def test_a_session_whose_block_raised_is_failed_with_the_exception_text(store_url: str) -> None:
    error = ValueError("the model returned nonsense")
    with pytest.raises(ValueError) as raised, galtea_otel.session(custom_id="bad", version="1"):
        chat("hi")
        raise error
    assert raised.value is error
    assert galtea_otel.flush()
    [summary] = _store(store_url).list_sessions()
    assert summary.status == "FAILED"
    assert summary.error == "ValueError: the model returned nonsense"


def test_a_failed_turn_that_the_code_caught_leaves_the_session_completed(store_url: str) -> None:
    @galtea_otel.inference
    def flaky(prompt: str) -> str:
        raise TimeoutError("upstream took too long")

    with galtea_otel.session(custom_id="caught", version="1"):
        with pytest.raises(TimeoutError):
            flaky("x")
        chat("y")
    assert galtea_otel.flush()
    detail = read_session(_store(store_url), ("caught", "1"))
    assert detail is not None and detail.status == "COMPLETED"
    assert [(t.status, t.error) for t in detail.inference_results] == [
        ("FAILED", "TimeoutError: upstream took too long"), ("GENERATED", None)]


def test_async_sessions_and_tasks_stay_apart(store_url: str) -> None:
    @galtea_otel.inference
    async def achat(prompt: str) -> str:
        await asyncio.sleep(0)
        return prompt.upper()

    async def conversation(n: int) -> None:
        async with galtea_otel.session(custom_id=f"a{n}", version="1"):
            await asyncio.gather(achat(f"x{n}"), achat(f"y{n}"))

    async def main() -> None:
        await asyncio.gather(*(conversation(n) for n in range(3)))

    asyncio.run(main())
    assert galtea_otel.flush()
    store = _store(store_url)
    assert sorted((s.custom_id, s.turn_count, s.status) for s in store.list_sessions()) == [
        ("a0", 2, "COMPLETED"), ("a1", 2, "COMPLETED"), ("a2", 2, "COMPLETED")]
    detail = read_session(store, ("a1", "1"))
    assert detail is not None and sorted(t.output or "" for t in detail.inference_results) == ["X1", "Y1"]


def test_a_stream_is_recorded_as_consumed(store_url: str) -> None:
    @galtea_otel.inference
    def stream(prompt: str) -> Iterator[str]:
        yield from ["Hel", "lo", "!"]

    with galtea_otel.session(custom_id="s", version="1"):
        assert "".join(stream("a")) == "Hello!"
        for piece in stream("b"):
            assert piece == "Hel"
            break
    assert galtea_otel.flush()
    detail = read_session(_store(store_url), ("s", "1"))
    assert detail is not None
    assert [(t.input, t.output, t.abandoned) for t in detail.inference_results] == [
        ("a", "Hello!", False), ("b", "Hel", True)]


def test_test_case_sessions_take_the_test_case_context(store_url: str, tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"id": "tc-1", "input": "hi", "context": "the user is a pirate"}) + "\n")
    galtea_otel.register_test_cases(cases)
    with galtea_otel.session(custom_id="eval-1", version="2", test_case_id="tc-1"):
        chat("ahoy")
    assert galtea_otel.flush()
    store = _store(store_url)
    [summary] = store.list_sessions()
    assert (summary.test_case_id, summary.context, summary.is_production) == ("tc-1", "the user is a pirate", False)
    # The registered test cases reach the store too, for the CLI and the sync.
    # (The registry is per process: other tests may have registered more; this one must be there.)
    assert ("tc-1", "the user is a pirate") in [(c.id, c.context) for c in store.list_test_cases()]


def test_continue_session_stays_pending_across_requests_until_idle(store_url: str) -> None:
    import time

    from galtea_otel.pipeline import Pipeline

    for message in ("hi", "and then?", "bye"):  # each message in its own request, its own trace
        with galtea_otel.span("POST /chat", type="CHAIN"), galtea_otel.continue_session("web-1", "1"):
            chat(message)
    assert galtea_otel.flush()
    store = _store(store_url)
    [summary] = store.list_sessions()
    assert (summary.status, summary.turn_count) == ("PENDING", 3)
    detail = read_session(store, ("web-1", "1"))
    assert detail is not None and len({t.trace_id for t in detail.inference_results}) == 3
    assert Pipeline(store).sweep(now_ns=time.time_ns() + 31 * 60 * 10**9)["idle_closed"] == 1
    assert [s.status for s in store.list_sessions()] == ["COMPLETED"]
