"""@inference and span() on every kind of callable, input/output capture, errors, record_usage."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import galtea_otel
from galtea_otel import attributes as A
from tests.instrument.conftest import Otel, attr, in_session, loads


@galtea_otel.inference
def plain(prompt: str) -> str:
    return f"echo {prompt}"


@galtea_otel.inference(name="chat-call", model="gpt-x")
def with_defaults(prompt: str, temperature: float = 0.2, *, top_k: int = 3) -> dict[str, Any]:
    return {"text": prompt.upper(), "t": temperature}


@galtea_otel.inference
def no_args() -> int:
    return 7


@galtea_otel.inference
def var_args(*parts: str, **options: Any) -> str:
    return "-".join(parts)


@galtea_otel.inference
async def async_chat(prompt: str) -> str:
    await asyncio.sleep(0)
    return prompt[::-1]


@galtea_otel.inference
def generator_chat(n: int):
    for i in range(n):
        yield f"t{i} "


@galtea_otel.inference
async def async_generator_chat(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield f"a{i}"


class Bot:
    greeting = "hi"

    @galtea_otel.inference
    def method(self, prompt: str) -> str:
        return f"{self.greeting} {prompt}"

    @classmethod
    @galtea_otel.inference
    def class_below(cls, prompt: str) -> str:
        return f"{cls.greeting} {prompt}"

    @galtea_otel.inference
    @classmethod
    def class_above(cls, prompt: str) -> str:
        return f"{cls.greeting}! {prompt}"

    @staticmethod
    @galtea_otel.inference
    def static_below(prompt: str) -> str:
        return prompt * 2

    @galtea_otel.inference
    @staticmethod
    def static_above(prompt: str) -> str:
        return prompt * 3

    @galtea_otel.inference
    async def async_method(self, prompt: str) -> str:
        return prompt


def test_plain_function(otel: Otel) -> None:
    with galtea_otel.session(custom_id="c", version="1"):
        assert plain("hello") == "echo hello"
    span = otel.one("plain")
    assert attr(span, A.SPAN_TYPE) == A.TYPE_GENERATION
    assert attr(span, A.GEN_AI_OPERATION_NAME) == "chat"
    assert attr(span, A.GEN_AI_REQUEST_MODEL) is None
    assert loads(span, A.SPAN_INPUT) == "hello"
    assert loads(span, A.SPAN_OUTPUT) == "echo hello"
    assert in_session(span, "c")
    assert span.parent is not None and span.parent.span_id == otel.one("galtea.session").context.span_id


def test_input_binding_rules(otel: Otel) -> None:
    with_defaults("hi")
    with_defaults("hi", 0.9, top_k=1)
    with_defaults(temperature=0.5, prompt="kw")
    no_args()
    var_args("a", "b", sep="-")
    first, second, third = otel.named("chat-call")
    assert loads(first, A.SPAN_INPUT) == {"prompt": "hi", "temperature": 0.2, "top_k": 3}
    assert loads(second, A.SPAN_INPUT) == {"prompt": "hi", "temperature": 0.9, "top_k": 1}
    assert loads(third, A.SPAN_INPUT) == {"prompt": "kw", "temperature": 0.5, "top_k": 3}
    assert attr(first, A.GEN_AI_REQUEST_MODEL) == "gpt-x"
    assert loads(first, A.SPAN_OUTPUT) == {"text": "HI", "t": 0.2}
    assert loads(otel.one("no_args"), A.SPAN_INPUT) == {}
    assert loads(otel.one("no_args"), A.SPAN_OUTPUT) == 7
    assert loads(otel.one("var_args"), A.SPAN_INPUT) == {"parts": ["a", "b"], "options": {"sep": "-"}}


def test_wrong_arguments_still_raise_the_callers_type_error(otel: Otel) -> None:
    with pytest.raises(TypeError):
        plain("a", "b")  # type: ignore[call-arg]
    span = otel.one("plain")
    assert loads(span, A.SPAN_INPUT) == {"args": ["a", "b"], "kwargs": {}}
    assert span.status.status_code is StatusCode.ERROR


async def test_async_function(otel: Otel) -> None:
    assert inspect.iscoroutinefunction(async_chat)
    assert await async_chat("abc") == "cba"
    span = otel.one("async_chat")
    assert loads(span, A.SPAN_INPUT) == "abc" and loads(span, A.SPAN_OUTPUT) == "cba"


def test_generator_function(otel: Otel) -> None:
    assert inspect.isgeneratorfunction(generator_chat)
    assert list(generator_chat(3)) == ["t0 ", "t1 ", "t2 "]
    span = otel.one("generator_chat")
    assert loads(span, A.SPAN_INPUT) == 3 and loads(span, A.SPAN_OUTPUT) == "t0 t1 t2 "
    assert attr(span, A.SPAN_ABANDONED) is None


async def test_async_generator_function(otel: Otel) -> None:
    assert [x async for x in async_generator_chat(2)] == ["a0", "a1"]
    assert loads(otel.one("async_generator_chat"), A.SPAN_OUTPUT) == "a0a1"


async def test_methods_classmethods_staticmethods(otel: Otel) -> None:
    bot = Bot()
    assert bot.method("x") == "hi x"
    assert Bot.method(bot, "y") == "hi y"
    assert Bot.class_below("a") == "hi a" and bot.class_below("b") == "hi b"
    assert Bot.class_above("c") == "hi! c"
    assert Bot.static_below("s") == "ss" and bot.static_below("t") == "tt"
    assert Bot.static_above("u") == "uuu"
    assert await bot.async_method("m") == "m"
    inputs = {s.name: [] for s in otel.spans()}
    for s in otel.spans():
        inputs[s.name].append(loads(s, A.SPAN_INPUT))
    assert inputs == {
        "Bot.method": ["x", "y"],
        "Bot.class_below": ["a", "b"],
        "Bot.class_above": ["c"],
        "Bot.static_below": ["s", "t"],
        "Bot.static_above": ["u"],
        "Bot.async_method": ["m"],
    }


def test_exception_propagates_unchanged_and_marks_the_span(otel: Otel) -> None:
    error = ValueError("bad prompt")

    @galtea_otel.inference
    def failing(prompt: str) -> str:
        raise error

    with galtea_otel.session(custom_id="c", version="1"), pytest.raises(ValueError) as caught:
        failing("p")
    assert caught.value is error
    assert caught.traceback[-1].name == "failing"  # the original frame is still the last one
    span = otel.one("test_exception_propagates_unchanged_and_marks_the_span.<locals>.failing")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad prompt"
    assert attr(span, A.SPAN_ERROR) == "ValueError: bad prompt"
    assert [e.name for e in span.events] == ["exception"]
    assert loads(span, A.SPAN_INPUT) == "p" and attr(span, A.SPAN_OUTPUT) is None
    # a caught failed inference leaves the session itself without error
    assert otel.one("galtea.session").status.status_code is StatusCode.UNSET


async def test_async_exception_propagates(otel: Otel) -> None:
    class Custom(Exception):
        def __str__(self) -> str:
            raise RuntimeError("even __str__ fails")

    error = Custom()

    @galtea_otel.inference(name="afail")
    async def afail() -> None:
        raise error

    with pytest.raises(Custom) as caught:
        await afail()
    assert caught.value is error
    span = otel.one("afail")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.status.description or "").startswith("Custom")


def test_span_context_manager_and_decorator(otel: Otel) -> None:
    @galtea_otel.span(type="tool")
    def get_weather(city: str) -> dict[str, Any]:
        return {"city": city, "temp": 21}

    @galtea_otel.span
    def bare_step(x: int) -> int:
        return x + 1

    with galtea_otel.session(custom_id="c", version="1"), galtea_otel.inference(name="turn") as inv:
        inv.set_input("weather?")
        with galtea_otel.span("search-docs", type="RETRIEVER") as sp:
            sp.set_input({"q": "weather"})
            sp.set_output(["doc1"])
        get_weather("Paris")
        bare_step(1)
        inv.set_output("sunny")
    turn = otel.one("turn")
    assert attr(turn, A.SPAN_TYPE) == A.TYPE_GENERATION
    assert loads(turn, A.SPAN_INPUT) == "weather?" and loads(turn, A.SPAN_OUTPUT) == "sunny"
    search = otel.one("search-docs")
    assert attr(search, A.SPAN_TYPE) == "RETRIEVER" and loads(search, A.SPAN_OUTPUT) == ["doc1"]
    tool = otel.one("test_span_context_manager_and_decorator.<locals>.get_weather")
    assert attr(tool, A.SPAN_TYPE) == "TOOL" and loads(tool, A.SPAN_OUTPUT) == {"city": "Paris", "temp": 21}
    step = otel.one("test_span_context_manager_and_decorator.<locals>.bare_step")
    assert attr(step, A.SPAN_TYPE) == "SPAN" and loads(step, A.SPAN_OUTPUT) == 2
    for child in (search, tool, step):
        assert child.parent is not None and child.parent.span_id == turn.context.span_id
        assert in_session(child, "c")
    with pytest.raises(ValueError):
        galtea_otel.span("x", type="NOT-A-TYPE")
    with pytest.raises(ValueError):
        galtea_otel.span("x", type="SESSION")


def test_span_context_manager_error(otel: Otel) -> None:
    with pytest.raises(KeyError), galtea_otel.span("lookup", type="TOOL"):
        raise KeyError("k")
    span = otel.one("lookup")
    assert span.status.status_code is StatusCode.ERROR and attr(span, A.SPAN_ERROR) == "KeyError: 'k'"


def test_record_usage_from_a_nested_span(otel: Otel) -> None:
    @galtea_otel.inference(name="llm")
    def llm(prompt: str) -> str:
        with otel.tracer.start_as_current_span("http-call"), galtea_otel.span("parse"):
            assert galtea_otel.record_usage(model="gpt-x-2024", input_tokens=10, output_tokens=5,
                                            cache_read_input_tokens=2, cost=0.0012)
        return "ok"

    llm("p")
    span = otel.one("llm")
    assert attr(span, A.GEN_AI_RESPONSE_MODEL) == "gpt-x-2024"
    assert attr(span, A.GEN_AI_INPUT_TOKENS) == 10 and attr(span, A.GEN_AI_OUTPUT_TOKENS) == 5
    assert attr(span, A.GEN_AI_CACHE_READ_TOKENS) == 2 and attr(span, A.INFERENCE_COST) == 0.0012
    assert attr(otel.one("http-call"), A.GEN_AI_INPUT_TOKENS) is None


def test_record_usage_outside_an_inference_and_bad_values_never_raise(otel: Otel) -> None:
    assert galtea_otel.record_usage(input_tokens=1) is False
    assert galtea_otel.stats()["record_usage.outside_inference"] == 1
    with galtea_otel.inference(name="x"):
        galtea_otel.record_usage(input_tokens=-1, output_tokens="many", cost="free")  # type: ignore[arg-type]
    assert attr(otel.one("x"), A.GEN_AI_INPUT_TOKENS) is None
    assert galtea_otel.stats()["internal_errors.record_usage.invalid"] == 3


def test_usage_is_read_from_an_openai_like_response(otel: Otel) -> None:
    @dataclass
    class Usage:
        prompt_tokens: int
        completion_tokens: int
        prompt_tokens_details: Any

    @dataclass
    class Completion:
        model: str
        usage: Usage
        choices: list[Any]

    @galtea_otel.inference
    def call_openai(prompt: str) -> Completion:
        return Completion("gpt-4o-2024", Usage(12, 30, SimpleNamespace(cached_tokens=4)), ["..."])

    call_openai("p")
    span = otel.one("test_usage_is_read_from_an_openai_like_response.<locals>.call_openai")
    assert attr(span, A.GEN_AI_RESPONSE_MODEL) == "gpt-4o-2024"
    assert attr(span, A.GEN_AI_INPUT_TOKENS) == 12 and attr(span, A.GEN_AI_OUTPUT_TOKENS) == 30
    assert attr(span, A.GEN_AI_CACHE_READ_TOKENS) == 4
    assert loads(span, A.SPAN_OUTPUT)["usage"]["prompt_tokens"] == 12


def test_decorated_functions_keep_their_identity() -> None:
    assert plain.__name__ == "plain" and plain.__doc__ is None
    assert inspect.signature(with_defaults).parameters["temperature"].default == 0.2
    assert inspect.iscoroutinefunction(Bot.async_method)


def test_one_span_object_shared_by_concurrent_threads(otel: Otel) -> None:
    import threading

    shared = galtea_otel.span("shared-step", type="CHAIN")
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with galtea_otel.session(custom_id=f"s{i}", version="1"), shared as step:
            barrier.wait()  # all four blocks are open at once
            step.set_output(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    steps = otel.named("shared-step")
    assert sorted(loads(s, A.SPAN_OUTPUT) for s in steps) == [0, 1, 2, 3]
    for s in steps:
        assert attr(s, A.SESSION_CUSTOM_ID) == f"s{loads(s, A.SPAN_OUTPUT)}"


async def test_a_sync_callable_returning_a_coroutine_ends_when_awaited(otel: Otel) -> None:
    async def real(x: int) -> int:
        await asyncio.sleep(0)
        with otel.tracer.start_as_current_span("inside"):
            return x * 2

    wrapped = galtea_otel.inference(name="hidden-async")(lambda x: real(x))
    pending = wrapped(21)
    assert otel.named("hidden-async") == []
    assert await pending == 42
    span = otel.one("hidden-async")
    assert loads(span, A.SPAN_OUTPUT) == 42
    assert otel.one("inside").parent.span_id == span.context.span_id  # type: ignore[union-attr]
