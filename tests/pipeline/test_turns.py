"""How turns are made (issue 8 point 2): one turn per user message and its reply, on real SDK spans."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import Status, StatusCode, Tracer

from galtea_otel import attributes as A
from galtea_otel.assemble.assembler import assemble, to_detail
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SessionDetail
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import SpanData
from galtea_otel.store.sqlite import SQLiteStore
from galtea_otel.translate.row import KIND_LLM, SpanRow

from .spans import collect, key, sdk_tracer

K = key("conv", "1")
AGENT = {**K, A.GEN_AI_OPERATION_NAME: "invoke_agent"}
TOOL = {**K, A.GEN_AI_OPERATION_NAME: "execute_tool"}


def chat(i: int, **extra: Any) -> dict[str, Any]:
    return {**K, A.GEN_AI_OPERATION_NAME: "chat", A.GEN_AI_RESPONSE_MODEL: "gpt-test",
            A.GEN_AI_INPUT_TOKENS: 100 + i, A.GEN_AI_OUTPUT_TOKENS: 10 + i, "galtea.inference.cost": 0.00001,
            **extra}


def _ingest(tmp_path: Path, spans: list[SpanData], **settings: Any) -> SessionDetail:
    pipeline = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / 's.db'}"), PipelineSettings(**settings))
    pipeline.ingest(spans)
    detail = read_session(pipeline.store, ("conv", "1"))
    assert detail is not None
    return detail


def _tool_round_trips(tracer: Tracer, turns: int = 2) -> None:
    """A session of ``turns`` agent runs, each: LLM (asks for a tool) -> tool -> LLM (answers)."""
    with tracer.start_as_current_span("galtea.session", attributes={**K, A.SPAN_TYPE: "SESSION"}):
        for i in range(turns):
            with tracer.start_as_current_span("invoke_agent", attributes={**AGENT, A.SPAN_INPUT: f"user {i}"}):
                with tracer.start_as_current_span("chat", attributes=chat(0, **{A.SPAN_INPUT: f"user {i}"})):
                    pass
                with tracer.start_as_current_span("execute_tool weather", attributes={
                        **TOOL, A.SPAN_INPUT: '{"city": "Paris"}', A.SPAN_OUTPUT: "sunny"}):
                    pass
                with tracer.start_as_current_span("chat", attributes=chat(1, **{A.SPAN_OUTPUT: f"reply {i}"})):
                    pass


def test_a_tool_round_trip_is_one_turn(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        _tool_round_trips(tracer)
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert detail.turn_count == 2 and detail.status == "COMPLETED"
    assert [(t.input, t.output) for t in detail.inference_results] == [("user 0", "reply 0"), ("user 1", "reply 1")]
    first = detail.inference_results[0]
    # Tokens and cost over the two distinct LLM calls of the turn.
    assert (first.input_tokens, first.output_tokens, first.total_tokens, first.model) == (201, 21, 222, "gpt-test")
    assert first.cost == 2e-05
    assert [s.type for s in first.spans] == ["GENERATION", "TOOL", "GENERATION"]
    tool = first.spans[1]
    assert (tool.input, tool.output) == ('{"city": "Paris"}', "sunny")
    assert detail.input_tokens == 402 and detail.cost == 4e-05
    assert detail.spans == []
    # One result per LLM call is still there for those who want it.
    (tmp_path / "per-call").mkdir()
    per_call = _ingest(tmp_path / "per-call", spans, turns="llm-call")
    assert per_call.turn_count == 4
    assert [t.input_tokens for t in per_call.inference_results] == [100, 101, 100, 101]
    # The agent and the tools outside any LLM call are the session's spans in that mode.
    assert sorted(s.type for s in per_call.spans) == ["AGENT", "AGENT"]


def test_a_vercel_style_tool_span_beside_the_llm_spans_belongs_to_the_turn(tmp_path: Path) -> None:
    """``ai.generateText`` (a chain) holds ``doGenerate`` LLM spans and an ``ai.toolCall`` span as siblings; the
    app's own request span around it is plain and never a head."""
    generate = {**K, "ai.operationId": "ai.generateText", "ai.prompt": "what is the weather?"}
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("POST /chat", attributes=K):
            with tracer.start_as_current_span("ai.generateText", attributes={
                    **generate, A.SPAN_TYPE: "CHAIN", A.SPAN_INPUT: "what is the weather?",
                    A.SPAN_OUTPUT: "It is sunny."}):
                with tracer.start_as_current_span("ai.generateText.doGenerate", attributes=chat(0)):
                    pass
                with tracer.start_as_current_span("ai.toolCall", attributes={**TOOL, A.SPAN_OUTPUT: "sunny"}):
                    pass
                with tracer.start_as_current_span("ai.generateText.doGenerate", attributes=chat(1)):
                    pass
            with tracer.start_as_current_span("log", attributes=K):
                pass
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert detail.turn_count == 1
    [turn] = detail.inference_results
    assert (turn.input, turn.output, turn.total_tokens) == ("what is the weather?", "It is sunny.", 222)
    assert [s.name for s in turn.spans] == [
        "ai.generateText.doGenerate", "ai.toolCall", "ai.generateText.doGenerate"]
    assert sorted(s.name for s in detail.spans) == ["POST /chat"]
    assert [c.name for c in detail.spans[0].children] == ["log"]


def test_nested_llm_spans_of_one_call_count_once(tmp_path: Path) -> None:
    """LlamaIndex emits three nested LLM-kind spans per call, each with the usage: counted once; the outer
    span's values win, the nested ones fill what it lacks."""
    with sdk_tracer() as (tracer, exporter):
        for i in range(2):
            with tracer.start_as_current_span("llm.chat", attributes=chat(i, **{A.SPAN_INPUT: f"q{i}"})), \
                    tracer.start_as_current_span("OpenAI.chat", attributes=chat(i)), \
                    tracer.start_as_current_span("OpenAI._chat", attributes=chat(i, **{A.SPAN_OUTPUT: f"a{i}"})):
                pass
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert [(t.input, t.output, t.input_tokens, t.output_tokens) for t in detail.inference_results] == [
        ("q0", "a0", 100, 10), ("q1", "a1", 101, 11)]
    assert detail.input_tokens == 201 and detail.cost == 2e-05


def test_a_decorated_wrapper_takes_what_its_client_calls_report(tmp_path: Path) -> None:
    """An ``@inference``-style LLM span with no usage around two client calls: their usage is summed into it."""
    wrapper = {**K, A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: "hi", A.SPAN_OUTPUT: "hello"}
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("answer", attributes=wrapper):
            for i in range(2):
                with tracer.start_as_current_span("openai.chat", attributes=chat(i)):
                    pass
        spans = collect(exporter)
    [turn] = _ingest(tmp_path, spans).inference_results
    assert (turn.input, turn.output, turn.model, turn.input_tokens, turn.output_tokens) == (
        "hi", "hello", "gpt-test", 201, 21)


def test_a_turn_fails_when_its_head_or_its_last_call_fails(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        # A call that failed and was retried successfully: the turn is GENERATED.
        with tracer.start_as_current_span("invoke_agent", attributes={**AGENT, A.SPAN_INPUT: "retry"}):
            with tracer.start_as_current_span("chat", attributes=chat(0)) as first:
                first.set_status(Status(StatusCode.ERROR, "RateLimitError: slow down"))
            with tracer.start_as_current_span("chat", attributes=chat(1, **{A.SPAN_OUTPUT: "ok"})):
                pass
        # The final call failed and the agent swallowed it.
        with tracer.start_as_current_span("invoke_agent", attributes={**AGENT, A.SPAN_INPUT: "broken"}), \
                tracer.start_as_current_span("chat", attributes=chat(2)) as last:
            last.set_status(Status(StatusCode.ERROR, "APIError: bad gateway"))
        # The agent failed itself.
        with tracer.start_as_current_span("invoke_agent", attributes={**AGENT, A.SPAN_INPUT: "agent"}) as agent:
            with tracer.start_as_current_span("chat", attributes=chat(3, **{A.SPAN_OUTPUT: "x"})):
                pass
            agent.set_status(Status(StatusCode.ERROR, "MaxTurnsExceeded: 10"))
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert [(t.input, t.status, t.error) for t in detail.inference_results] == [
        ("retry", "GENERATED", None), ("broken", "FAILED", "APIError: bad gateway"),
        ("agent", "FAILED", "MaxTurnsExceeded: 10")]
    assert detail.status == "PENDING"


def test_a_chain_without_llm_calls_or_content_is_no_turn(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("prepare", attributes={**K, A.SPAN_TYPE: "CHAIN"}), \
                tracer.start_as_current_span("search", attributes={**K, A.SPAN_TYPE: "RETRIEVER"}):
            pass
        with tracer.start_as_current_span("chat", attributes=chat(0, **{A.SPAN_INPUT: "q"})):
            pass
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert [t.input for t in detail.inference_results] == ["q"]
    assert [(s.name, [c.name for c in s.children]) for s in detail.spans] == [("prepare", ["search"])]


def _timed(tracer: Tracer, name: str, start_ms: int, end_ms: int, attrs: dict[str, Any]) -> None:
    span = tracer.start_span(name, attributes=attrs, start_time=start_ms * 10**6)
    span.end(end_time=end_ms * 10**6)


def test_turns_tied_at_the_millisecond_keep_conversation_order(tmp_path: Path) -> None:
    """The JS SDK's clock has millisecond resolution: quick turns start in the same millisecond. Of two that
    started together, the one that ended first came first; every arrival order gives the same order."""
    with sdk_tracer() as (tracer, exporter):
        _timed(tracer, "chat", 1000, 1000, chat(0, **{A.SPAN_INPUT: "first"}))
        _timed(tracer, "chat", 1000, 1001, chat(1, **{A.SPAN_INPUT: "second"}))
        _timed(tracer, "chat", 1001, 1003, chat(2, **{A.SPAN_INPUT: "third"}))
        spans = collect(exporter)
    seen = set()
    for n, order in enumerate(itertools.permutations(spans)):
        path = tmp_path / str(n)
        path.mkdir()
        detail = _ingest(path, list(order))
        seen.add(tuple((t.index, t.input) for t in detail.inference_results))
    assert seen == {((0, "first"), (1, "second"), (2, "third"))}


def test_sums_carry_no_float_noise(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        for cost in (0.00001, 0.00002, 0.1, 0.2):
            with tracer.start_as_current_span("chat", attributes=chat(0, **{"galtea.inference.cost": cost})):
                pass
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert detail.cost == 0.30003
    assert '"cost":0.30003' in detail.model_dump_json()
    pipeline = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / 's.db'}"))
    [listed] = pipeline.store.list_sessions()
    assert listed.cost == 0.30003


def _row(span_id: str, parent: str | None, kind: str, start: int, **kw: Any) -> SpanRow:
    return SpanRow(trace_id="t" * 32, span_id=span_id, parent_span_id=parent, name=span_id, kind=kind,
                   start_ns=start, end_ns=start + 10, status=kw.pop("status", 0), **kw)


def test_messages_and_finish_reason_are_the_last_calls() -> None:
    """``messages`` = the last call's input messages then its output messages (the nested spans of the call fill
    what its outer span lacks); absent message lists give an empty list."""
    sent = [{"role": "user", "parts": [{"type": "text", "content": "weather?"}]}]
    tool_call = [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "weather",
                                                  "arguments": {"city": "Paris"}}]}]
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": "sunny"}], "finish_reason": "stop"}]
    rows = [
        _row("agent", None, "AGENT", 0, input="weather?"),
        _row("llm1", "agent", KIND_LLM, 1, input_messages=json.dumps(sent), output_messages=json.dumps(tool_call),
             finish_reason="tool_calls"),
        _row("tool", "agent", "TOOL", 2),
        _row("llm2", "agent", KIND_LLM, 3),
        _row("llm2-inner", "llm2", KIND_LLM, 4, input_messages=json.dumps(sent + tool_call),
             output_messages=json.dumps(answer), finish_reason="stop", output="sunny"),
        _row("plain", None, KIND_LLM, 20, input="no messages"),
    ]
    for order in (rows, list(reversed(rows)), random.Random(3).sample(rows, len(rows))):
        assembly = assemble(order, "c", "1", PipelineSettings())
        assert assembly is not None
        detail = to_detail(assembly)
        first, second = detail.inference_results
        assert (first.input, first.output, first.finish_reason) == ("weather?", "sunny", "stop")
        assert first.messages == sent + tool_call + answer
        assert (second.messages, second.finish_reason) == ([], None)


@pytest.mark.parametrize("mode", ["user", "llm-call", "trace"])
def test_every_mode_is_a_pure_function_of_the_set_of_spans(tmp_path: Path, mode: str) -> None:
    with sdk_tracer() as (tracer, exporter):
        _tool_round_trips(tracer, turns=3)
        spans = collect(exporter)
    reference = _ingest(tmp_path, spans, turns=mode).model_dump()
    rng = random.Random(mode)
    for n in range(3):
        shuffled = rng.sample(spans, len(spans))
        pipeline = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / f'{n}.db'}"), PipelineSettings(turns=mode))
        for span in shuffled:
            pipeline.ingest([span])
        detail = read_session(pipeline.store, ("conv", "1"))
        assert detail is not None and detail.model_dump() == reference


def test_a_turn_reports_the_model_that_replied_not_the_one_the_agent_asked_for(tmp_path: Path) -> None:
    """An agent span states the requested model; its LLM call the response model: the turn shows the latter."""
    with sdk_tracer() as (tracer, exporter):
        agent = {**AGENT, A.GEN_AI_REQUEST_MODEL: "gpt-asked", A.SPAN_INPUT: "hi"}
        with tracer.start_as_current_span("invoke_agent", attributes=agent), \
                tracer.start_as_current_span("chat", attributes=chat(0, **{A.SPAN_OUTPUT: "hello"})):
            pass
        spans = collect(exporter)
    [turn] = _ingest(tmp_path, spans).inference_results
    assert (turn.input, turn.output, turn.model) == ("hi", "hello", "gpt-test")


def _messages(*messages: tuple[str, dict[str, Any]]) -> str:
    return json.dumps([{"role": role, "parts": [part]} for role, part in messages])


USER = ("user", {"type": "text", "content": "weather in Paris?"})
CALL = ("assistant", {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}})
RESULT = ("tool", {"type": "tool_call_response", "id": "c1", "response": "sunny"})


def _round_trip_without_agent(tracer: Tracer, turns: int, *, agent: bool = False) -> None:
    """openai-v2 style: each user turn its own trace under a plain app span, LLM -> tool -> LLM, no agent span;
    the second call's input messages end with the tool result."""
    for i in range(turns):
        root = {**K, **({A.GEN_AI_OPERATION_NAME: "invoke_agent"} if agent else {})}
        with tracer.start_as_current_span("handle request", attributes=root):
            with tracer.start_as_current_span("chat", attributes=chat(0, **{
                    "gen_ai.input.messages": _messages(USER),
                    "gen_ai.output.messages": _messages(CALL)})):
                pass
            with tracer.start_as_current_span("execute_tool weather", attributes={
                    **TOOL, "gen_ai.tool.name": "weather"}):
                pass
            with tracer.start_as_current_span("chat", attributes=chat(1, **{
                    "gen_ai.input.messages": _messages(USER, CALL, RESULT),
                    "gen_ai.output.messages": _messages(("assistant", {"type": "text", "content": f"sunny {i}"}))})):
                pass


def test_a_tool_round_trip_without_an_agent_continues_its_turn(tmp_path: Path) -> None:
    """The second LLM call of a round trip (its last input message a tool result), in a trace with no agent or
    chain span, continues the previous turn of its trace: one turn per user message, in any arrival order."""
    with sdk_tracer() as (tracer, exporter):
        _round_trip_without_agent(tracer, 2)
        spans = collect(exporter)
    detail = _ingest(tmp_path, spans)
    assert detail.turn_count == 2
    first = detail.inference_results[0]
    assert (first.input, first.output) == ("weather in Paris?", "sunny 0")
    assert (first.input_tokens, first.output_tokens, first.cost) == (201, 21, 2e-05)
    assert [s.type for s in first.spans] == ["TOOL", "GENERATION"]
    assert first.latency_ms >= (first.ended_at - first.started_at).total_seconds() * 1000
    assert detail.input_tokens == 402
    for n, order in enumerate([spans[::-1], random.Random(3).sample(spans, len(spans))]):
        (tmp_path / str(n)).mkdir()
        pipeline = Pipeline(SQLiteStore(f"sqlite:///{tmp_path / str(n) / 's.db'}"), PipelineSettings())
        for span in order:
            pipeline.ingest([span])
        again = read_session(pipeline.store, ("conv", "1"))
        assert again is not None and again.model_dump() == detail.model_dump()
    # Per LLM call, each call is still its own result.
    (tmp_path / "per-call").mkdir()
    assert _ingest(tmp_path / "per-call", spans, turns="llm-call").turn_count == 4


def test_with_an_agent_span_the_agent_is_the_turn(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        _round_trip_without_agent(tracer, 1, agent=True)
        spans = collect(exporter)
    [turn] = _ingest(tmp_path, spans).inference_results
    assert turn.output == "sunny 0" and turn.input_tokens == 201
