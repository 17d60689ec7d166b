"""Returned streams: captured as consumed, their span ended exactly once, rolling context in generators."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import galtea_otel
from galtea_otel import attributes as A
from tests.fakes.openai_server import FakeOpenAI, reply_for, response_model, usage_for
from tests.instrument.conftest import Otel, attr, loads
from tests.needs import need_module


@pytest.fixture
def otel_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    return caplog


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r.getMessage() for r in caplog.records
             if "detach" in r.getMessage() or "ended span" in r.getMessage() or r.name == "galtea_otel"]
    assert noisy == []


@pytest.fixture(scope="module")
def openai_client() -> Iterator[Any]:
    """The real ``openai`` client against the fake OpenAI-compatible server (tests/fakes/openai_server.py)."""
    openai = need_module("openai")
    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        yield client
        client.close()


MESSAGES = [{"role": "user", "content": "Say hello"}]


@galtea_otel.inference(name="words")
def words(n: int, fail_at: int | None = None) -> Iterator[str]:
    for i in range(n):
        if i == fail_at:
            raise RuntimeError(f"failed at {i}")
        yield f"w{i} "


@galtea_otel.inference(name="openai-stream")
def openai_stream(client: Any) -> Any:
    return client.chat.completions.create(model="gpt-s", messages=MESSAGES, stream=True,
                                          stream_options={"include_usage": True})


def test_exhaustion_ends_once_with_full_output(otel: Otel, otel_logs: pytest.LogCaptureFixture) -> None:
    stream = words(3)
    assert otel.named("words") == []  # not ended until consumed
    assert list(stream) == ["w0 ", "w1 ", "w2 "]
    span = otel.one("words")
    assert loads(span, A.SPAN_OUTPUT) == "w0 w1 w2 "
    assert attr(span, A.SPAN_ABANDONED) is None
    stream.close()  # after exhaustion: no second end
    del stream
    gc.collect()
    assert len(otel.named("words")) == 1
    assert_clean_logs(otel_logs)


def test_break_on_a_loop_ends_the_span_abandoned(otel: Otel, otel_logs: pytest.LogCaptureFixture) -> None:
    for word in words(10):
        if word == "w1 ":
            break
    span = otel.one("words")
    assert attr(span, A.SPAN_ABANDONED) is True
    assert loads(span, A.SPAN_OUTPUT) == "w0 w1 "
    assert span.status.status_code is StatusCode.UNSET
    assert_clean_logs(otel_logs)


def test_close_ends_the_span_abandoned(otel: Otel) -> None:
    stream = words(10)
    next(stream)
    stream.close()
    span = otel.one("words")
    assert attr(span, A.SPAN_ABANDONED) is True and loads(span, A.SPAN_OUTPUT) == "w0 "
    with pytest.raises(StopIteration):
        next(stream)
    assert len(otel.named("words")) == 1


def test_garbage_collection_ends_the_span(otel: Otel, otel_logs: pytest.LogCaptureFixture) -> None:
    holder: dict[str, Any] = {"stream": words(10)}
    holder["cycle"] = holder  # only the cycle collector can free it
    next(holder["stream"])
    next(holder["stream"])
    del holder
    assert otel.named("words") == []
    gc.collect()
    span = otel.one("words")
    assert attr(span, A.SPAN_ABANDONED) is True and loads(span, A.SPAN_OUTPUT) == "w0 w1 "
    assert_clean_logs(otel_logs)


def test_an_error_in_the_stream_propagates_and_marks_the_span(otel: Otel) -> None:
    seen = []
    with pytest.raises(RuntimeError, match="failed at 2"):
        for word in words(5, fail_at=2):
            seen.append(word)
    span = otel.one("words")
    assert seen == ["w0 ", "w1 "]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: failed at 2"
    assert loads(span, A.SPAN_OUTPUT) == "w0 w1 " and attr(span, A.SPAN_ABANDONED) is None


def test_rolling_context_parents_inner_spans(otel: Otel, otel_logs: pytest.LogCaptureFixture) -> None:
    tracer = otel.tracer

    @galtea_otel.inference(name="gen-a")
    def gen_a() -> Iterator[int]:
        for i in range(2):
            with tracer.start_as_current_span(f"a-inner-{i}"):
                yield i

    @galtea_otel.inference(name="gen-b")
    def gen_b() -> Iterator[int]:
        for i in range(2):
            with tracer.start_as_current_span(f"b-inner-{i}"):
                pass
            yield i

    with galtea_otel.session(custom_id="c", version="1"):
        outside = trace.get_current_span()
        a, b = gen_a(), gen_b()
        for _ in range(2):  # interleaved consumption
            next(a)
            assert trace.get_current_span() is outside  # nothing left attached across a yield
            next(b)
            assert trace.get_current_span() is outside
        list(a), list(b)
    gen_a_id = otel.one("gen-a").context.span_id
    gen_b_id = otel.one("gen-b").context.span_id
    for i in range(2):
        assert otel.one(f"a-inner-{i}").parent.span_id == gen_a_id  # type: ignore[union-attr]
        assert otel.one(f"b-inner-{i}").parent.span_id == gen_b_id  # type: ignore[union-attr]
    assert_clean_logs(otel_logs)


def test_an_openai_stream_is_proxied_and_captured(otel: Otel, openai_client: Any) -> None:
    import openai

    with openai_stream(openai_client) as stream:
        assert stream.response.status_code == 200  # attributes of the real stream still work
        assert isinstance(stream, openai.Stream)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    reply = reply_for("Say hello")
    assert text == reply
    span = otel.one("openai-stream")
    assert loads(span, A.SPAN_OUTPUT) == reply
    assert attr(span, A.GEN_AI_RESPONSE_MODEL) == response_model("gpt-s")
    usage = usage_for(MESSAGES, reply)
    assert attr(span, A.GEN_AI_INPUT_TOKENS) == usage["prompt_tokens"]
    assert attr(span, A.GEN_AI_OUTPUT_TOKENS) == usage["completion_tokens"]
    assert attr(span, A.SPAN_ABANDONED) is None


def test_an_openai_stream_closed_early(otel: Otel, openai_client: Any) -> None:
    stream = openai_stream(openai_client)
    first = next(stream)  # the role chunk (empty content)
    assert first.choices[0].delta.content == ""
    next(stream)
    stream.close()
    assert stream.__wrapped__.response.is_closed  # the real stream was closed: its connection released
    span = otel.one("openai-stream")
    assert attr(span, A.SPAN_ABANDONED) is True
    assert loads(span, A.SPAN_OUTPUT) == reply_for("Say hello")[:len(loads(span, A.SPAN_OUTPUT))] != ""


def test_non_text_chunks_become_a_json_list(otel: Otel) -> None:
    @galtea_otel.inference(name="events")
    def events() -> Iterator[dict[str, Any]]:
        yield {"type": "start"}
        yield {"type": "delta", "n": 1}

    assert len(list(events())) == 2
    assert loads(otel.one("events"), A.SPAN_OUTPUT) == [{"type": "start"}, {"type": "delta", "n": 1}]


def test_lists_and_strings_are_not_streams(otel: Otel) -> None:
    @galtea_otel.inference(name="listy")
    def listy() -> list[int]:
        return [1, 2]

    assert listy() == [1, 2]
    assert type(listy()) is list
    assert loads(otel.named("listy")[0], A.SPAN_OUTPUT) == [1, 2]


def test_capture_output_off_for_a_stream(otel: Otel) -> None:
    @galtea_otel.inference(name="quiet", capture_output=False)
    def quiet() -> Iterator[str]:
        yield "secret"

    assert list(quiet()) == ["secret"]
    assert attr(otel.one("quiet"), A.SPAN_OUTPUT) is None


@galtea_otel.inference(name="agen")
async def agen(n: int, fail_at: int | None = None) -> AsyncIterator[str]:
    for i in range(n):
        if i == fail_at:
            raise ValueError("async failure")
        await asyncio.sleep(0)
        yield f"a{i}"


async def test_async_stream_exhaustion_break_and_error(
    otel: Otel, otel_logs: pytest.LogCaptureFixture
) -> None:
    assert [x async for x in agen(3)] == ["a0", "a1", "a2"]
    stream = agen(10)
    async for item in stream:
        if item == "a1":
            break
    await stream.aclose()
    with pytest.raises(ValueError, match="async failure"):
        async for _ in agen(3, fail_at=1):
            pass
    done, abandoned, failed = otel.named("agen")
    assert loads(done, A.SPAN_OUTPUT) == "a0a1a2" and attr(done, A.SPAN_ABANDONED) is None
    assert loads(abandoned, A.SPAN_OUTPUT) == "a0a1" and attr(abandoned, A.SPAN_ABANDONED) is True
    assert failed.status.status_code is StatusCode.ERROR and loads(failed, A.SPAN_OUTPUT) == "a0"
    assert_clean_logs(otel_logs)


async def test_async_stream_garbage_collected(otel: Otel) -> None:
    stream = agen(10)
    assert await stream.__anext__() == "a0"
    del stream
    gc.collect()
    span = otel.one("agen")
    assert attr(span, A.SPAN_ABANDONED) is True and loads(span, A.SPAN_OUTPUT) == "a0"


async def test_async_generator_rolling_context(otel: Otel, otel_logs: pytest.LogCaptureFixture) -> None:
    @galtea_otel.inference(name="agen-ctx")
    async def agen_ctx() -> AsyncIterator[int]:
        for i in range(2):
            with otel.tracer.start_as_current_span(f"inner-{i}"):
                await asyncio.sleep(0)
            yield i

    with galtea_otel.session(custom_id="c", version="1"):
        outside = trace.get_current_span()
        async for _ in agen_ctx():
            assert trace.get_current_span() is outside
    parent = otel.one("agen-ctx").context.span_id
    assert all(otel.one(f"inner-{i}").parent.span_id == parent for i in range(2))  # type: ignore[union-attr]
    assert_clean_logs(otel_logs)
