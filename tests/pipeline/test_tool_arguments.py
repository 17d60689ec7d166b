"""A tool span that records a bare argument (OpenInference's LangChain spans write a tool called with one string
argument as that string: ``"Paris"`` for ``{"city": "Paris"}``) shows the arguments the model gave the call with
the same id, read from the turn's messages; a tool span that has its arguments object keeps it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SpanRecord
from galtea_otel.store.sqlite import SQLiteStore

from .spans import collect, sdk_tracer

CALL = {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_7", "name": "get_weather",
                                        "arguments": {"city": "Paris"}}]}


def _walk(spans: list[SpanRecord]) -> Iterator[SpanRecord]:
    for span in spans:
        yield span
        yield from _walk(span.children)


@pytest.mark.parametrize(("tool_input", "call_id", "expected"), [
    ("Paris", "call_7", {"city": "Paris"}),  # bare value, matching call: the call's arguments
    (json.dumps({"city": "Lyon"}), "call_7", {"city": "Lyon"}),  # an arguments object is kept as recorded
    ("Paris", "call_other", "Paris"),  # no call with that id: kept as recorded
])
def test_a_tool_span_shows_the_arguments_of_its_call(tmp_path: Path, tool_input: str, call_id: str,
                                                      expected: object) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    session = {"session.id": "tools-1"}
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("agent", attributes={**session, "openinference.span.kind": "AGENT",
                                                                "input.value": "Weather in Paris?"}):
            with tracer.start_as_current_span("llm", attributes={
                    **session, "openinference.span.kind": "LLM", "llm.model_name": "m1",
                    "gen_ai.input.messages": json.dumps([
                        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]),
                    "gen_ai.output.messages": json.dumps([CALL])}):
                pass
            with tracer.start_as_current_span("get_weather", attributes={
                    **session, "openinference.span.kind": "TOOL", "tool.name": "get_weather",
                    "input.value": tool_input, "output.value": "sunny", "tool_call.id": call_id}):
                pass
        spans = collect(exporter)
    Pipeline(store).ingest(spans)
    detail = read_session(store, ("tools-1", store.list_sessions(limit=1)[0].version))
    assert detail is not None and len(detail.inference_results) == 1
    tools = [s for s in _walk(detail.inference_results[0].spans) if s.type == "TOOL"]
    assert len(tools) == 1
    got = tools[0].input
    assert (json.loads(got) if isinstance(expected, dict) else got) == expected
    store.close()
