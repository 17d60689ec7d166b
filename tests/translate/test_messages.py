"""The content model (README, "The content model"): each producer's messages, tools and keys as the translator reads
them. Attribute sets are shaped as each real package emits them (copied from captured spans), recorded through the
real OpenTelemetry SDK and decoded like every exported span."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import Status, StatusCode

from galtea_otel.translate import messages as M
from galtea_otel.translate.row import KIND_LLM, SpanRow
from galtea_otel.translate.translator import error_text, translate
from tests.pipeline.spans import collect, sdk_tracer


def row(name: str, attrs: Mapping[str, Any], *, error: str | None = None,
        exception: BaseException | None = None) -> SpanRow:
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span(name, attributes=dict(attrs), record_exception=False,
                                          set_status_on_exception=False) as span:
            if exception is not None:
                span.record_exception(exception)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
        [data] = collect(exporter)
    return translate(data)


def msgs(text: str | None) -> list[dict[str, Any]]:
    assert text is not None
    decoded = json.loads(text)
    assert isinstance(decoded, list)
    return decoded


def text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def meta(r: SpanRow) -> dict[str, Any]:
    return json.loads(r.metadata) if r.metadata else {}


WEATHER_ARGS = {"city": "Paris"}


# --- GenAI -------------------------------------------------------------------------------------------------------

def test_genai_json_messages_give_the_user_message_and_the_reply() -> None:
    # opentelemetry-instrumentation-openai-v2 with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
    history = [
        {"role": "system", "parts": [text("You are terse.")]},
        {"role": "user", "parts": [text("Weather in Paris?")]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                         "arguments": WEATHER_ARGS}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "18C, sunny"}]},
    ]
    reply = [{"role": "assistant", "parts": [text("It is 18C and sunny.")], "finish_reason": "stop"}]
    r = row("chat gpt-4o-mini", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.input.messages": json.dumps(history), "gen_ai.output.messages": json.dumps(reply),
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 30,
    })
    assert r.kind == KIND_LLM
    assert (r.input, r.output, r.finish_reason) == ("Weather in Paris?", "It is 18C and sunny.", "stop")
    assert msgs(r.input_messages) == history
    assert msgs(r.output_messages) == reply
    assert "gen_ai.input.messages" not in meta(r) and "gen_ai.response.finish_reasons" not in meta(r)


def test_system_instructions_lead_the_messages() -> None:
    # pydantic-ai's chat span (instrumentation version 2+): instructions beside the messages
    r = row("chat gpt-4o", {
        "gen_ai.operation.name": "chat",
        "gen_ai.system_instructions": json.dumps([text("Be brief.")]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [text("hi")]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
            {"type": "tool_call", "id": "c9", "name": "lookup", "arguments": {"q": "x"}}],
            "finish_reason": "tool_call"}]),
    })
    assert msgs(r.input_messages)[0] == {"role": "system", "parts": [text("Be brief.")]}
    assert r.input == "hi"
    assert r.output is None  # the reply is only a tool call
    assert r.finish_reason == "tool_call"


def test_openllmetry_flattened_prompt_and_completion() -> None:
    r = row("openai.chat", {
        "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be terse.",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Weather in Paris?",
        "gen_ai.prompt.2.role": "assistant", "gen_ai.prompt.2.tool_calls.0.id": "call_1",
        "gen_ai.prompt.2.tool_calls.0.name": "get_weather",
        "gen_ai.prompt.2.tool_calls.0.arguments": '{"city": "Paris"}',
        "gen_ai.prompt.3.role": "tool", "gen_ai.prompt.3.tool_call_id": "call_1", "gen_ai.prompt.3.content": "18C",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "18C in Paris.",
        "gen_ai.completion.0.finish_reason": "stop",
    })
    sent = msgs(r.input_messages)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[2]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": WEATHER_ARGS}]
    assert sent[3]["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": "18C"}]
    assert (r.input, r.output, r.finish_reason) == ("Weather in Paris?", "18C in Paris.", "stop")


# --- OpenInference -------------------------------------------------------------------------------------------------

def test_openinference_flattened_messages_with_tool_calls_and_contents() -> None:
    r = row("ChatOpenAI", {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be terse.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.contents.0.message_content.type": "text",
        "llm.input_messages.1.message.contents.0.message_content.text": "Weather in Paris?",
        "input.value": json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}),
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
        "output.value": json.dumps({"choices": [{"message": {"role": "assistant", "content": None},
                                                 "finish_reason": "tool_calls"}]}),
    })
    assert r.input == "Weather in Paris?"
    assert r.output is None
    assert msgs(r.output_messages) == [{"role": "assistant", "parts": [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": WEATHER_ARGS}]}]


def test_raw_envelopes_on_an_llm_span() -> None:
    # OpenInference when only the request / response bodies are recorded
    request = {"model": "gpt-4o-mini", "temperature": 0, "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}]}
    response = {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                                                 "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}}
    r = row("ChatCompletion", {"openinference.span.kind": "LLM", "input.value": json.dumps(request),
                               "input.mime_type": "application/json", "output.value": json.dumps(response)})
    assert (r.input, r.output, r.finish_reason) == ("Hello", "Hi!", "stop")
    assert msgs(r.input_messages)[0] == {"role": "system", "parts": [text("Be terse.")]}


def test_openai_responses_style_input_and_output() -> None:
    request = {"model": "gpt-4o", "instructions": "Be terse.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "fc_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "fc_1", "output": "18C"}]}
    response = {"status": "completed", "output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "18C."}]}]}
    r = row("response", {"openinference.span.kind": "LLM", "input.value": json.dumps(request),
                         "output.value": json.dumps(response)})
    sent = msgs(r.input_messages)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[3]["parts"] == [{"type": "tool_call_response", "id": "fc_1", "response": "18C"}]
    assert (r.input, r.output) == ("Weather?", "18C.")


def test_anthropic_like_content_blocks() -> None:
    request = {"model": "claude", "system": "Be terse.", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "w", "input": WEATHER_ARGS}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "18C"}]}]}
    response = {"role": "assistant", "content": [{"type": "text", "text": "18C."}], "stop_reason": "end_turn"}
    r = row("anthropic.chat", {"openinference.span.kind": "LLM", "input.value": json.dumps(request),
                               "output.value": json.dumps(response)})
    assert r.input == "Weather?"  # the tool result sent back as a user message has no text
    assert (r.output, r.finish_reason) == ("18C.", "end_turn")
    assert msgs(r.input_messages)[3]["parts"][0] == {"type": "tool_call_response", "id": "tu_1", "response": "18C"}


def test_langchain_graph_state_on_a_chain_span() -> None:
    human = {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
             "kwargs": {"content": "Weather in Paris?", "type": "human"}}
    ai_call = {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
               "kwargs": {"content": "", "type": "ai", "tool_calls": [
                   {"name": "get_weather", "args": WEATHER_ARGS, "id": "call_1", "type": "tool_call"}]}}
    tool = {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "ToolMessage"],
            "kwargs": {"content": "18C", "type": "tool", "tool_call_id": "call_1", "name": "get_weather"}}
    final = {"content": "It is 18C.", "type": "ai"}  # the plain dict form
    r = row("LangGraph", {"openinference.span.kind": "CHAIN",
                          "input.value": json.dumps({"messages": [human]}),
                          "output.value": json.dumps({"messages": [human, ai_call, tool, final]})})
    assert (r.kind, r.input, r.output) == ("CHAIN", "Weather in Paris?", "It is 18C.")
    out = msgs(r.output_messages)
    assert [m["role"] for m in out] == ["user", "assistant", "tool", "assistant"]
    assert out[1]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": WEATHER_ARGS}]
    assert out[2]["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": "18C"}]
    assert "input.raw" in meta(r)  # small: kept beside the messages
    big = {"messages": [{"type": "human", "content": "x" * 5000}]}
    r = row("LangGraph", {"openinference.span.kind": "CHAIN", "input.value": json.dumps(big)})
    assert r.input == "x" * 5000 and "input.raw" not in meta(r)


def test_plain_values_stay_as_they_are() -> None:
    r = row("chain", {"openinference.span.kind": "CHAIN", "input.value": "just text", "output.value": '{"a": 1}'})
    assert (r.input, r.output, r.input_messages, r.output_messages) == ("just text", '{"a": 1}', None, None)
    r = row("retrieve", {"openinference.span.kind": "RETRIEVER", "input.value": json.dumps({"messages": []})})
    assert r.input_messages is None


# --- Vercel AI SDK --------------------------------------------------------------------------------------------------

VERCEL_PROMPT = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
    {"role": "assistant", "content": [{"type": "tool-call", "toolCallId": "call_1", "toolName": "get_weather",
                                       "input": WEATHER_ARGS}]},
    {"role": "tool", "content": [{"type": "tool-result", "toolCallId": "call_1", "toolName": "get_weather",
                                  "output": {"type": "json", "value": {"temp": 18}}}]},
]


def test_vercel_provider_call_is_an_llm_span() -> None:
    r = row("ai.generateText.doGenerate", {
        "operation.name": "ai.generateText.doGenerate", "ai.operationId": "ai.generateText.doGenerate",
        "ai.model.id": "gpt-4o-mini", "ai.model.provider": "openai.chat",
        "ai.prompt.messages": json.dumps(VERCEL_PROMPT), "ai.response.text": "It is 18C.",
        "ai.response.finishReason": "stop", "ai.usage.inputTokens": 40, "ai.usage.outputTokens": 6,
        "ai.telemetry.metadata.sessionId": "conv-1", "ai.telemetry.metadata.userId": "u-7",
    })
    assert r.kind == KIND_LLM
    assert (r.model, r.input_tokens, r.output_tokens, r.total_tokens) == ("gpt-4o-mini", 40, 6, 46)
    assert (r.input, r.output, r.finish_reason) == ("Weather in Paris?", "It is 18C.", "stop")
    assert (r.own_custom_id, r.key_weak, r.user_id) == ("conv-1", False, "u-7")
    sent = msgs(r.input_messages)
    assert sent[2]["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": WEATHER_ARGS}]
    assert sent[3]["parts"] == [{"type": "tool_call_response", "id": "call_1", "response": {"temp": 18}}]
    assert msgs(r.output_messages) == [{"role": "assistant", "parts": [text("It is 18C.")], "finish_reason": "stop"}]


def test_vercel_step_with_only_tool_calls_and_v4_tokens() -> None:
    r = row("ai.streamText.doStream", {
        "ai.operationId": "ai.streamText.doStream", "gen_ai.request.model": "gpt-4o-mini",
        "ai.prompt.messages": json.dumps([{"role": "user", "content": "Weather?"}]),
        "ai.response.toolCalls": json.dumps([{"toolCallType": "function", "toolCallId": "call_1",
                                              "toolName": "get_weather", "args": '{"city":"Paris"}'}]),
        "ai.response.finishReason": "tool-calls", "ai.usage.promptTokens": 10, "ai.usage.completionTokens": 3,
    })
    assert r.kind == KIND_LLM and r.output is None and r.finish_reason == "tool-calls"
    assert (r.input_tokens, r.output_tokens) == (10, 3)
    assert msgs(r.output_messages)[0]["parts"] == [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": WEATHER_ARGS}]


def test_vercel_call_root_is_an_agent_and_tool_call_a_tool() -> None:
    root = row("ai.generateText", {"ai.operationId": "ai.generateText",
                                   "ai.prompt": json.dumps({"system": "Be terse.", "prompt": "Weather in Paris?"}),
                                   "ai.response.text": "It is 18C."})
    assert (root.kind, root.input, root.output) == ("AGENT", "Weather in Paris?", "It is 18C.")
    assert msgs(root.input_messages)[0]["role"] == "system"
    tool = row("ai.toolCall", {"ai.operationId": "ai.toolCall", "ai.toolCall.name": "get_weather",
                               "ai.toolCall.id": "call_1", "ai.toolCall.args": json.dumps(WEATHER_ARGS),
                               "ai.toolCall.result": json.dumps("18C, sunny")})
    assert (tool.kind, tool.name) == ("TOOL", "ai.toolCall")
    assert (tool.input, tool.output) == (json.dumps(WEATHER_ARGS), "18C, sunny")
    assert {k: meta(tool)[k] for k in ("tool.name", "tool.call_id")} == {"tool.name": "get_weather",
                                                                         "tool.call_id": "call_1"}


# --- tools of the other conventions ---------------------------------------------------------------------------------

def test_tool_spans_of_every_convention_carry_arguments_and_result() -> None:
    args = json.dumps(WEATHER_ARGS)
    cases: Sequence[tuple[str, dict[str, Any]]] = [
        ("execute_tool get_weather", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                                      "gen_ai.tool.call.id": "c1", "gen_ai.tool.call.arguments": args,
                                      "gen_ai.tool.call.result": "18C"}),
        # pydantic-ai before instrumentation version 3: no span kind, the span name says it
        ("running tool", {"gen_ai.tool.name": "get_weather", "gen_ai.tool.call.id": "c1", "tool_arguments": args,
                          "tool_response": "18C", "logfire.msg": "running tool: get_weather"}),
        # pydantic-ai version 3
        ("execute_tool get_weather", {"gen_ai.tool.name": "get_weather", "gen_ai.tool.call.id": "c1",
                                      "gen_ai.tool.call.arguments": args, "gen_ai.tool.call.result": "18C"}),
        # OpenInference (LangChain, LlamaIndex, openai-agents function spans)
        ("get_weather", {"openinference.span.kind": "TOOL", "tool.name": "get_weather", "input.value": args,
                         "output.value": "18C"}),
        # openinference-langchain: the tool's output is a ToolMessage
        ("get_weather", {"openinference.span.kind": "TOOL", "tool.name": "get_weather", "input.value": args,
                         "output.value": json.dumps({"lc": 1, "type": "constructor", "id": [
                             "langchain", "schema", "messages", "ToolMessage"], "kwargs": {
                             "content": "18C", "type": "tool", "tool_call_id": "c1"}})}),
    ]
    for name, attrs in cases:
        r = row(name, attrs)
        assert (r.kind, r.name, r.input, r.output) == ("TOOL", name, args, "18C"), (name, attrs)
        assert meta(r)["tool.name"] == "get_weather"


# --- pydantic-ai agents and keys ------------------------------------------------------------------------------------

def test_pydantic_ai_agent_run_is_a_turn_root_with_a_weak_key() -> None:
    history = [
        {"role": "system", "parts": [text("Be terse.")]},
        {"role": "user", "parts": [text("Weather in Paris?")]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "get_weather",
                                         "arguments": WEATHER_ARGS}]},
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "c1", "name": "get_weather",
                                    "result": "18C"}]},
        {"role": "assistant", "parts": [text("It is 18C.")], "finish_reason": "stop"},
    ]
    for name in ("agent run", "invoke_agent weather_agent"):
        r = row(name, {"model_name": "gpt-4o", "agent_name": "weather_agent",
                       "gen_ai.conversation.id": "7f0c-random", "final_result": "It is 18C.",
                       "pydantic_ai.all_messages": json.dumps(history)})
        assert (r.kind, r.input, r.output, r.model) == ("AGENT", "Weather in Paris?", "It is 18C.", "gpt-4o")
        assert (r.own_custom_id, r.key_weak) == ("7f0c-random", True)
        assert msgs(r.input_messages)[3]["parts"][0]["response"] == "18C"


def test_key_strength() -> None:
    assert row("x", {"session.id": "app-1"}).key_weak is False
    assert row("x", {"langfuse.session.id": "app-1", "gen_ai.conversation.id": "lib"}).own_custom_id == "app-1"
    stamped = row("x", {"galtea.session.custom_id": "c", "gen_ai.conversation.id": "c"})
    assert (stamped.own_custom_id, stamped.key_weak) == ("c", False)
    assert row("x", {"gen_ai.conversation.id": "lib"}).key_weak is True


def test_users_of_every_convention() -> None:
    for key in ("galtea.session.user_id", "user.id", "enduser.id", "langfuse.user.id",
                "traceloop.association.properties.user_id", "ai.telemetry.metadata.userId"):
        assert row("x", {key: "u-1"}).user_id == "u-1", key


# --- errors -----------------------------------------------------------------------------------------------------------

def test_a_langchain_error_is_type_and_message() -> None:
    stack = ("ValueError('failed on purpose')Traceback (most recent call last):\n\n  File \"app.py\", line 3, in f\n"
             "    raise ValueError('failed on purpose')\n\nValueError: failed on purpose")
    assert row("ChatOpenAI", {"openinference.span.kind": "LLM"}, error=stack).error == "ValueError: failed on purpose"
    with_event = row("chat", {"gen_ai.operation.name": "chat", "error.type": "APIStatusError"},
                     error="Error code: 500", exception=RuntimeError("Error code: 500 - boom"))
    assert with_event.error == "RuntimeError: Error code: 500 - boom"
    assert row("chat", {"error.type": "openai.InternalServerError"}, error="Error code: 500").error == \
        "openai.InternalServerError: Error code: 500"


def test_error_text_forms() -> None:
    assert error_text("ValueError('boom')") == "ValueError: boom"
    assert error_text("ValueError: boom", "ValueError") == "ValueError: boom"
    assert error_text("boom", "KeyError") == "KeyError: boom"
    assert error_text("openai.APIError: x", "openai.APIError") == "openai.APIError: x"


# --- the normalizer itself ------------------------------------------------------------------------------------------

def test_unknown_shapes_are_not_messages() -> None:
    assert M.from_request({"question": "hi"}) is None
    assert M.normalize([{"a": 1}]) is None
    assert M.from_response({"answer": 1}) is None
    assert M.loads("plain") is None and M.loads('"quoted"') is None
    assert M.user_text([{"role": "user", "parts": [text("a"), text("b")]}]) == "a\nb"


# --- LangChain, LlamaIndex and openai-agents through OpenInference (shaped as their captured spans) -----------------

def lc_dict(kind: str, **data: Any) -> dict[str, Any]:
    """A message as LangChain's ``messages_to_dict`` writes it (LangGraph state in OpenInference's values)."""
    return {"type": kind, "data": {"type": kind, "additional_kwargs": {}, "response_metadata": {}, **data}}


def test_a_langgraph_chain_span_reads_its_state_not_its_partial_llm_input_messages() -> None:
    # openinference-instrumentation-langchain writes llm.input_messages on CHAIN spans too, holding only the
    # state's first message: the conversation's first user message, on every later turn.
    state = [lc_dict("human", content="Weather in Paris?"),
             lc_dict("ai", content="", tool_calls=[{"name": "get_weather", "args": WEATHER_ARGS, "id": "c1",
                                                    "type": "tool_call"}]),
             lc_dict("tool", content="18C", tool_call_id="c1", name="get_weather"),
             lc_dict("ai", content="It is 18C."),
             {"role": "user", "content": "And tomorrow?"}]
    r = row("LangGraph", {
        "openinference.span.kind": "CHAIN", "input.value": json.dumps({"messages": state}),
        "output.value": json.dumps({"messages": [*state, lc_dict("ai", content="Rain.")]}),
        "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Weather in Paris?",
    })
    assert (r.kind, r.input, r.output) == ("CHAIN", "And tomorrow?", "Rain.")
    sent = msgs(r.input_messages)
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[1]["parts"] == [{"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": WEATHER_ARGS}]
    assert sent[2]["parts"] == [{"type": "tool_call_response", "id": "c1", "response": "18C"}]
    # Alone, the flattened list is still read.
    alone = row("LangGraph", {"openinference.span.kind": "CHAIN", "llm.input_messages.0.message.role": "user",
                              "llm.input_messages.0.message.content": "Weather in Paris?"})
    assert alone.input == "Weather in Paris?"


def test_a_langgraph_node_output_of_commands_gives_its_reply() -> None:
    update: list[dict[str, Any]] = [{"graph": None, "update": {"messages": [lc_dict("ai", content="It is 18C.")]},
                                     "resume": None, "goto": []}]
    r = row("model", {"openinference.span.kind": "CHAIN", "output.value": json.dumps(update)})
    assert r.output == "It is 18C."


def test_a_streamed_langchain_call_names_the_model_that_replied() -> None:
    # Streamed, OpenInference's llm.model_name is the requested model; the LLMResult names the response's.
    result = {"generations": [[{"text": "Hi.", "generation_info": {"finish_reason": "stop",
                                                                    "model_name": "gpt-4o-mini-2024-07-18"},
                                "type": "ChatGenerationChunk", "message": {
                                    "lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages",
                                                                           "AIMessageChunk"],
                                    "kwargs": {"content": "Hi.", "response_metadata": {
                                        "finish_reason": "stop", "model_name": "gpt-4o-mini-2024-07-18"}}}}]],
              "llm_output": None, "type": "LLMResult"}
    attrs = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
             "output.value": json.dumps(result), "llm.output_messages.0.message.role": "assistant",
             "llm.output_messages.0.message.content": "Hi."}
    r = row("ChatOpenAI", attrs)
    assert (r.model, r.output) == ("gpt-4o-mini-2024-07-18", "Hi.")
    del result["generations"][0][0]["message"]["kwargs"]["response_metadata"]  # type: ignore[index]
    assert row("ChatOpenAI", {**attrs, "output.value": json.dumps(result)}).model == "gpt-4o-mini-2024-07-18"
    # gen_ai.response.model is the response's already; no envelope is read then.
    assert row("chat", {**attrs, "gen_ai.response.model": "gpt-4o-mini-x"}).model == "gpt-4o-mini-x"
    assert row("ChatOpenAI", {**attrs, "output.value": "Hi."}).model == "gpt-4o-mini"


def test_llama_index_request_building_span_is_no_llm_call() -> None:
    # OpenInference marks every method of a LlamaIndex LLM class LLM; this one only builds the request.
    r = row("OpenAI._prepare_chat_with_tools", {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
        "input.value": json.dumps({"tools": ["<FunctionTool object>"], "user_msg": None, "chat_history": [
            "ChatMessage(role=<MessageRole.USER: 'user'>, blocks=[TextBlock(text='Weather?')])"]})})
    assert r.kind == "SPAN"
    assert row("OpenAI.astream_chat", {"openinference.span.kind": "LLM"}).kind == KIND_LLM


def test_a_llama_index_workflow_run_state_and_stop_event_are_no_content() -> None:
    stop = ("StopEvent(result=AgentOutput(response=ChatMessage(role=<MessageRole.ASSISTANT: 'assistant'>, "
            "additional_kwargs={}, blocks=[TextBlock(block_type='text', text='It is 18C in P...")
    steps = {f"step_{i}": {"accepted_events": ["<ToolCall(*, tool_name: str) -> None>"], "num_workers": 4}
             for i in range(30)}
    state = {"init_state": {"is_running": False, "config": {"steps": steps}},
             "start_event": "AgentWorkflowStartEvent()", "tags": "{}"}
    r = row("FunctionAgent.run", {"openinference.span.kind": "CHAIN", "input.value": json.dumps(state),
                                  "input.mime_type": "application/json", "output.value": stop,
                                  "output.mime_type": "text/plain"})
    assert (r.kind, r.input, r.output, r.input_messages, r.output_messages) == ("CHAIN", None, None, None, None)
    assert meta(r)["output.raw"] == stop and "input.raw" not in meta(r)  # small: kept; the state is 1 KB+
    small = row("FunctionAgent.run", {"openinference.span.kind": "CHAIN",
                                      "input.value": json.dumps({"init_state": {}, "start_event": "x"})})
    assert small.input is None and json.loads(meta(small)["input.raw"])["start_event"] == "x"


def test_tool_envelopes_are_taken_off() -> None:
    args = json.dumps(WEATHER_ARGS)
    output = {"blocks": [{"text": "18C"}], "tool_name": "get_weather",
              "raw_input": {"args": [], "kwargs": WEATHER_ARGS}, "raw_output": "18C", "is_error": False}
    llama = row("FunctionTool.acall", {"openinference.span.kind": "TOOL", "tool.name": "get_weather",
                                       "input.value": json.dumps({"kwargs": WEATHER_ARGS}),
                                       "output.value": json.dumps(output)})
    assert (llama.kind, llama.input, llama.output) == ("TOOL", args, "18C")
    structured = row("FunctionTool.acall", {"openinference.span.kind": "TOOL", "output.value": json.dumps(
        {**output, "raw_output": {"temp": 18}})})
    assert json.loads(structured.output or "") == {"temp": 18}
    positional = json.dumps({"args": ["Paris"], "kwargs": {}})  # kept whole: the kwargs are not the arguments
    assert row("FunctionTool.acall", {"openinference.span.kind": "TOOL", "input.value": positional}).input == \
        positional
    assert row("FunctionTool.acall", {"openinference.span.kind": "TOOL", "input.value": json.dumps(
        {"args": [], "kwargs": WEATHER_ARGS})}).input == args
    # A tool's own argument named kwargs, beside others, is the tool's.
    own = json.dumps({"kwargs": {"a": 1}, "city": "Paris"})
    assert row("t", {"openinference.span.kind": "TOOL", "input.value": own}).input == own
    # LangChain's ToolMessage as messages_to_dict writes it: its content, and its tool call id in metadata.
    lc = row("get_weather", {"openinference.span.kind": "TOOL", "tool.name": "get_weather", "input.value": "Paris",
                             "output.value": json.dumps(lc_dict("tool", content="18C", tool_call_id="call_1",
                                                                name="get_weather"))})
    assert (lc.input, lc.output, meta(lc)["tool.call_id"]) == ("Paris", "18C", "call_1")


def test_openai_agents_streamed_generation_output_is_its_reply() -> None:
    # The SDK records a streamed Chat Completions generation's output as [the Response it assembled].
    response = {"id": "__fake_id__", "model": "gpt-4o-mini", "object": "response", "status": None, "output": [
        {"id": "__fake_id__", "type": "message", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": "Once upon a time.", "annotations": [], "logprobs": []}]}],
        "usage": None}
    r = row("generation", {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                           "input.value": json.dumps([{"role": "user", "content": "A story?"}]),
                           "output.value": json.dumps([response]), "output.mime_type": "application/json"})
    assert (r.input, r.output) == ("A story?", "Once upon a time.")
    assert msgs(r.output_messages) == [{"role": "assistant", "parts": [text("Once upon a time.")]}]


def test_tool_results_in_a_user_message_are_a_tool_message() -> None:
    # pydantic-ai (GenAI parts, arguments as JSON text) and Anthropic send tool results back as user messages.
    history = [{"role": "user", "parts": [text("Weather?")]},
               {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "get_weather",
                                                "arguments": json.dumps(WEATHER_ARGS)}]},
               {"role": "user", "parts": [{"type": "tool_call_response", "id": "c1", "result": "18C"}]}]
    r = row("chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(history)})
    sent = msgs(r.input_messages)
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["parts"][0]["arguments"] == WEATHER_ARGS
    assert r.input == "Weather?"
    # A user message with text beside a tool result stays the user's.
    mixed = [history[0], {"role": "user", "parts": [text("Also:"), history[2]["parts"][0]]}]
    r = row("chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(mixed)})
    assert [m["role"] for m in msgs(r.input_messages)] == ["user", "user"]


def test_empty_messages_and_parts_are_left_out() -> None:
    # A failed LangChain call: an empty assistant reply; LlamaIndex: an empty text part beside a tool call.
    r = row("ChatOpenAI", {"openinference.span.kind": "LLM", "llm.output_messages.0.message.role": "assistant",
                           "llm.input_messages.0.message.role": "assistant",
                           "llm.input_messages.0.message.contents.0.message_content.type": "text",
                           "llm.input_messages.0.message.contents.0.message_content.text": "",
                           "llm.input_messages.0.message.tool_calls.0.tool_call.id": "c1",
                           "llm.input_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather"})
    assert r.output_messages is None
    assert msgs(r.input_messages) == [{"role": "assistant", "parts": [
        {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": None}]}]


def test_an_error_type_written_as_a_class_repr() -> None:
    # openai-v2 (opentelemetry-util-genai) writes error.type as str(type(exc))
    r = row("chat gpt-4o-mini", {"gen_ai.operation.name": "chat", "error.type": "<class 'openai.InternalServerError'>"},
            error="Error code: 500 - boom")
    assert r.error == "openai.InternalServerError: Error code: 500 - boom"


def test_a_part_whose_type_is_not_a_string_is_kept_as_a_part_of_no_known_kind() -> None:
    """A part ``{"type": [true]}`` (a list, not a name) raised TypeError (unhashable) out of translate, which
    failed its whole batch; it is a part of no known kind now, kept as it came, beside the text parts."""
    history = [{"role": "user", "parts": [{"type": [True]}, {"type": {"x": 1}, "content": "y"}, text("hi")]}]
    r = row("chat", {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(history)})
    assert r.kind == KIND_LLM
    parts = msgs(r.input_messages)[0]["parts"]
    assert parts == [{"type": [True]}, {"type": {"x": 1}, "content": "y"}, text("hi")]
    assert r.input == "hi"
