"""In process: @inference reads a messages-list argument and a chat-completion-like result (README, "The content
model"); Invocation.set_input / set_output / set_messages; session(user_id=...); test cases from the store."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

import galtea_otel
from galtea_otel import attributes as A
from galtea_otel.records import TestCase
from galtea_otel.store import open_store
from tests.instrument.conftest import Otel, attr, loads

HISTORY = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
]
COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is 18C."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35},
}


@galtea_otel.inference
def chat(messages: list[dict[str, Any]], model: str = "gpt-4o-mini", temperature: float = 0.0) -> Any:
    return ChatCompletion.model_validate(COMPLETION)


@galtea_otel.inference
def chat_dict(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return COMPLETION


@galtea_otel.inference
def chat_list(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c2", "name": "f", "arguments": {}}]}]


@galtea_otel.inference
def plain(prompt: str) -> dict[str, Any]:
    return {"answer": 42}


def test_messages_argument_and_chat_completion_result(otel: Otel) -> None:
    chat(HISTORY, temperature=0.5)
    span = otel.one("chat")
    assert loads(span, A.SPAN_INPUT) == "Weather in Paris?"
    sent = loads(span, A.GEN_AI_INPUT_MESSAGES)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                 "arguments": {"city": "Paris"}}]
    assert loads(span, A.SPAN_OUTPUT) == "It is 18C."
    assert loads(span, A.GEN_AI_OUTPUT_MESSAGES) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "It is 18C."}], "finish_reason": "stop"}]
    assert attr(span, A.GEN_AI_FINISH_REASONS) == ("stop",)
    assert (attr(span, A.GEN_AI_RESPONSE_MODEL), attr(span, A.GEN_AI_INPUT_TOKENS)) == ("gpt-4o-mini-2024", 30)


def test_dict_result_gives_model_and_tokens_when_missing(otel: Otel) -> None:
    chat_dict(HISTORY)
    span = otel.one("chat_dict")
    assert loads(span, A.SPAN_OUTPUT) == "It is 18C."
    assert (attr(span, A.GEN_AI_RESPONSE_MODEL), attr(span, A.GEN_AI_INPUT_TOKENS),
            attr(span, A.GEN_AI_OUTPUT_TOKENS)) == ("gpt-4o-mini-2024", 30, 5)


def test_genai_messages_list_and_tool_call_only_reply(otel: Otel) -> None:
    chat_list([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    span = otel.one("chat_list")
    assert loads(span, A.SPAN_INPUT) == "hi"
    assert attr(span, A.SPAN_OUTPUT) is None  # only a tool call: no reply text
    assert loads(span, A.GEN_AI_OUTPUT_MESSAGES)[0]["parts"][0]["name"] == "f"


def test_other_values_are_captured_as_before(otel: Otel) -> None:
    plain("hello")
    span = otel.one("plain")
    assert (loads(span, A.SPAN_INPUT), loads(span, A.SPAN_OUTPUT)) == ("hello", {"answer": 42})
    assert attr(span, A.GEN_AI_INPUT_MESSAGES) is None and attr(span, A.GEN_AI_OUTPUT_MESSAGES) is None

    @galtea_otel.span(type="TOOL")
    def tool(messages: list[dict[str, Any]]) -> dict[str, Any]:
        return COMPLETION

    tool(HISTORY)  # not an inference: the values as they are
    span = otel.one("test_other_values_are_captured_as_before.<locals>.tool")
    assert loads(span, A.SPAN_INPUT) == HISTORY


def test_invocation_setters(otel: Otel) -> None:
    with galtea_otel.inference(name="manual") as inv:
        inv.set_input(HISTORY)
        inv.set_output(ChatCompletion.model_validate(COMPLETION))
    span = otel.one("manual")
    assert loads(span, A.SPAN_INPUT) == "Weather in Paris?"
    assert loads(span, A.SPAN_OUTPUT) == "It is 18C."

    with galtea_otel.inference(name="both") as inv:
        inv.set_input("what the user typed")
        inv.set_messages(input=HISTORY, output=SimpleNamespace(
            role="assistant", stop_reason="end_turn",
            content=[SimpleNamespace(type="text", text="Sunny."),
                     SimpleNamespace(type="tool_use", id="tu_1", name="w", input={"c": 1})]))
    span = otel.one("both")
    assert loads(span, A.SPAN_INPUT) == "what the user typed"  # set_input() wins over the messages
    assert loads(span, A.SPAN_OUTPUT) == "Sunny."
    assert len(loads(span, A.GEN_AI_INPUT_MESSAGES)) == 4
    assert loads(span, A.GEN_AI_OUTPUT_MESSAGES)[0]["parts"][1] == {
        "type": "tool_call", "id": "tu_1", "name": "w", "arguments": {"c": 1}}
    assert attr(span, A.GEN_AI_FINISH_REASONS) == ("end_turn",)


def test_capture_off_records_no_messages(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    galtea_otel.configure(tracer_provider=otel.provider, exporter=otel.exported, capture_content=False)
    chat(HISTORY)
    span = otel.one("chat")
    assert attr(span, A.GEN_AI_INPUT_MESSAGES) is None and attr(span, A.SPAN_OUTPUT) is None


def test_session_user_id(otel: Otel) -> None:
    with galtea_otel.session("conv-u", "1.0", user_id="user-7"):
        pass
    for name in ("galtea.session", "galtea.session.start"):
        span = otel.one(name)
        assert (attr(span, A.USER_ID), attr(span, A.SESSION_USER_ID)) == ("user-7", "user-7")
    with pytest.raises(ValueError, match="user_id"):
        galtea_otel.session("conv-u", "1.0", user_id="  ")


def test_test_cases_loaded_into_the_store_open_a_session(otel: Otel, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    store = open_store(url)  # as `galtea-otel test-cases load` does
    store.put_test_cases([TestCase(id="tc-store-1", input="hi", context="the context")])
    store.close()
    galtea_otel.configure(store=url, tracer_provider=otel.provider)
    with galtea_otel.session("conv-t", "1.0", test_case_id="tc-store-1") as s:
        assert s.context == "the context"
    assert attr(otel.one("galtea.session"), A.TEST_CASE_ID) == "tc-store-1"
    with pytest.raises(ValueError, match="test-cases load"):
        galtea_otel.session("conv-t", "1.0", test_case_id="tc-nowhere")
    assert attr(otel.one("galtea.session"), A.SESSION_CONTEXT) == "the context"
