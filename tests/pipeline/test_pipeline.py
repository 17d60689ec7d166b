"""The translate -> assemble -> store path, end to end on real SDK spans and a real SQLite file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import SpanData
from galtea_otel.store import open_store
from galtea_otel.store.sqlite import SQLiteStore

from .spans import collect, conversation, key, sdk_tracer


def _pipeline(path: Path, **kw: object) -> Pipeline:
    return Pipeline(SQLiteStore(f"sqlite:///{path}"), PipelineSettings(**kw))  # type: ignore[arg-type]


def _snapshot(pipeline: Pipeline) -> dict[str, object]:
    sessions = pipeline.store.list_sessions(limit=1000)
    out: dict[str, object] = {}
    for s in sessions:
        detail = read_session(pipeline.store, (s.custom_id, s.version))
        assert detail is not None
        out[f"{s.custom_id}/{s.version}"] = (s.model_dump(mode="json"), detail.model_dump(mode="json"))
    return out


@pytest.fixture(scope="module")
def corpus() -> list[SpanData]:
    with sdk_tracer({"service.version": "9.9"}) as (tracer, exporter):
        conversation(tracer, "ok", "1.0", 3)
        conversation(tracer, "failed", "1.0", 2, fail=True)
        conversation(tracer, "failed-turn", "1.0", 3, failed_turn=1)
        conversation(tracer, "resolved", "2.0", 2, keyed_children=False)
        conversation(tracer, "ok", "1.1", 1)
        return collect(exporter)


def test_records_from_a_conversation(tmp_path: Path, corpus: list[SpanData]) -> None:
    p = _pipeline(tmp_path / "s.db")
    result = p.ingest(corpus)
    assert result.accepted == len(corpus) and result.rejected == 0
    by_key = {(s.custom_id, s.version): s for s in p.store.list_sessions()}
    assert set(by_key) == {("ok", "1.0"), ("failed", "1.0"), ("failed-turn", "1.0"), ("resolved", "2.0"),
                           ("ok", "1.1")}
    ok = read_session(p.store, ("ok", "1.0"))
    assert ok is not None and ok.status == "COMPLETED" and ok.error is None
    assert [t.input for t in ok.inference_results] == ["question 0", "question 1", "question 2"]
    assert [t.index for t in ok.inference_results] == [0, 1, 2]
    assert json.loads(ok.inference_results[1].output or "") == {"answer": 1}
    # The nested LLM client span folds into the decorated turn: model, tokens and cost come from it.
    first = ok.inference_results[0]
    assert (first.model, first.input_tokens, first.output_tokens, first.total_tokens) == ("gpt-test", 10, 5, 15)
    assert first.cost == pytest.approx(0.001)
    assert sorted(s.type for s in first.spans) == ["GENERATION", "RETRIEVER"]
    assert ok.turn_count == 3 and ok.input_tokens == 33 and ok.total_tokens == 48
    assert ok.metadata == {"user": "ok"}
    failed = by_key[("failed", "1.0")]
    assert failed.status == "FAILED" and failed.error == "RuntimeError: conversation broke"
    turn_failed = read_session(p.store, ("failed-turn", "1.0"))
    assert turn_failed is not None and turn_failed.status == "COMPLETED"
    assert [t.status for t in turn_failed.inference_results] == ["GENERATED", "FAILED", "GENERATED"]
    assert turn_failed.inference_results[1].error == "TimeoutError: upstream"
    resolved = read_session(p.store, ("resolved", "2.0"))
    assert resolved is not None and resolved.turn_count == 2 and resolved.status == "COMPLETED"


def test_strict_fails_a_session_on_a_failed_turn(tmp_path: Path, corpus: list[SpanData]) -> None:
    p = _pipeline(tmp_path / "s.db", strict=True)
    p.ingest(corpus)
    s = {(x.custom_id, x.version): x for x in p.store.list_sessions()}[("failed-turn", "1.0")]
    assert s.status == "FAILED" and s.error == "turn 1 failed: TimeoutError: upstream"


def test_pending_while_running_then_completed(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "c", "1", 1)
        spans = collect(exporter)
    p = _pipeline(tmp_path / "s.db")
    start = [s for s in spans if s.name == "galtea.session.start"]
    p.ingest(start)
    assert [x.status for x in p.store.list_sessions()] == ["PENDING"]
    p.ingest([s for s in spans if s.name != "galtea.session"])
    assert [x.status for x in p.store.list_sessions()] == ["PENDING"]
    p.ingest(spans)
    assert [x.status for x in p.store.list_sessions()] == ["COMPLETED"]


def test_replay_changes_nothing(tmp_path: Path, corpus: list[SpanData]) -> None:
    p = _pipeline(tmp_path / "s.db")
    p.ingest(corpus)
    before = _snapshot(p)
    again = p.ingest(corpus)
    assert again.accepted == 0 and again.duplicates == len(corpus)
    assert _snapshot(p) == before


def test_invalid_ids_are_rejected_alone(tmp_path: Path, corpus: list[SpanData]) -> None:
    from dataclasses import replace

    bad = [replace(corpus[0], span_id="00" * 8), replace(corpus[1], trace_id="xyz"),
           replace(corpus[2], parent_span_id="abc")]
    p = _pipeline(tmp_path / "s.db")
    result = p.ingest(bad + corpus[3:])
    assert result.rejected == 3 and result.accepted == len(corpus) - 3
    assert len(result.errors) == 3 and "span_id" in result.errors[0]


def test_late_turn_reopens_by_default_and_is_left_out_when_ignored(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "c", "1", 1)
        with tracer.start_as_current_span("late", attributes={**key("c", "1"), "galtea.span.type": "GENERATION"}):
            pass
        spans = collect(exporter)
    reopen = _pipeline(tmp_path / "a.db")
    reopen.ingest(spans)
    assert [(s.status, s.turn_count) for s in reopen.store.list_sessions()] == [("PENDING", 2)]
    ignore = _pipeline(tmp_path / "b.db", late_spans="ignore")
    ignore.ingest(spans)
    assert [(s.status, s.turn_count) for s in ignore.store.list_sessions()] == [("COMPLETED", 1)]


def test_sweep_closes_idle_sessions_and_settles_orphans(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        with tracer.start_as_current_span("galtea.session.start",
                                          attributes={**key("idle", "1"), "galtea.session.event": "start"}):
            pass
        with tracer.start_as_current_span("llm", attributes={"gen_ai.operation.name": "chat"}):
            pass
        with tracer.start_as_current_span("http-request"):
            pass
        spans = collect(exporter)
    p = _pipeline(tmp_path / "s.db", idle_close_minutes=1, hold_seconds=10)
    p.ingest(spans)
    assert [(s.custom_id, s.status) for s in p.store.list_sessions()] == [("idle", "PENDING")]
    later = spans[0].end_ns + 120 * 10**9
    counts = p.sweep(now_ns=later)
    # The LLM trace that never got a key becomes a session of its own, idle too, so closed as well.
    assert counts == {"idle_closed": 2, "orphan_sessions": 1, "orphans_dropped": 1}
    statuses = {s.custom_id: s.status for s in p.store.list_sessions()}
    llm_trace = spans[1].trace_id
    assert statuses == {"idle": "COMPLETED", llm_trace: "COMPLETED"}
    assert p.store.counters() == {"idle_closed": 2, "orphan_sessions": 1, "orphans_dropped": 1}
    assert p.sweep(now_ns=later) == {"idle_closed": 0, "orphan_sessions": 0, "orphans_dropped": 0}


def test_trace_turn_mode_groups_by_trace(tmp_path: Path) -> None:
    with sdk_tracer() as (tracer, exporter):
        for i in range(3):  # one request per user message, no session span, key only on the root
            root = {"session.id": "web-1", "input.value": f"msg {i}"}
            llm = {"openinference.span.kind": "LLM", "output.value": f"reply {i}", "llm.token_count.prompt": 3,
                   "llm.token_count.completion": 4}
            with tracer.start_as_current_span("handle", attributes=root), \
                    tracer.start_as_current_span("llm", attributes=llm):
                pass
        spans = collect(exporter)
    p = _pipeline(tmp_path / "s.db", turns="trace", default_version="v0")
    p.ingest(list(reversed(spans)))
    detail = p.session("web-1")
    assert detail is not None and detail.version == "v0" and detail.status == "PENDING"
    assert [(t.input, t.output, t.total_tokens) for t in detail.inference_results] == [
        (f"msg {i}", f"reply {i}", 7) for i in range(3)]


def test_store_url_errors(tmp_path: Path) -> None:
    from galtea_otel.store import StoreError

    with pytest.raises(StoreError, match="sqlite://"):
        open_store("mysql://x/y")
    text = tmp_path / "notes.db"
    text.write_text("this is not a database, just some text " * 100)
    with pytest.raises(StoreError, match="not a"):
        open_store(str(text))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_order_batching_and_duplication_give_the_same_records(
    tmp_path_factory: pytest.TempPathFactory, corpus: list[SpanData], data: st.DataObject
) -> None:
    reference = _pipeline(tmp_path_factory.mktemp("ref") / "s.db")
    reference.ingest(corpus)
    expected = _snapshot(reference)

    spans = data.draw(st.permutations(corpus), label="order")
    extra = data.draw(st.lists(st.sampled_from(corpus), max_size=15), label="duplicates")
    spans = spans + extra
    random.Random(data.draw(st.integers(0, 2**32), label="seed")).shuffle(spans)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(spans) - 1)), max_size=12), label="cuts"))
    p = _pipeline(tmp_path_factory.mktemp("perm") / "s.db")
    start = 0
    for cut in [*cuts, len(spans)]:
        p.ingest(spans[start:cut])
        start = cut
    assert _snapshot(p) == expected


def test_hostile_values_never_fail_the_good_spans_beside_them(tmp_path: Path) -> None:
    """Values OTLP can carry but a store cannot hold are cleaned or rejected alone (SESSION_MODEL 4.4)."""
    k = {"galtea.session.custom_id": "s", "galtea.session.version": "1", "gen_ai.operation.name": "chat"}
    good = SpanData("1" * 32, "1" * 16, None, "chat", 1, 2, attributes=k)
    surrogate = SpanData("2" * 32, "2" * 16, None, "chat", 1, 2,
                         attributes={**k, "galtea.span.input": "\ud800 and \x00 too", "x": float("nan")})
    huge_tokens = SpanData("3" * 32, "3" * 16, None, "chat", 1, 2, attributes={**k, "gen_ai.usage.input_tokens": 1e20})
    late_time = SpanData("4" * 32, "4" * 16, None, "chat", 2**63, 2**63 + 1, attributes=k)
    p = _pipeline(tmp_path / "s.db")
    result = p.ingest([good, surrogate, huge_tokens, late_time])
    assert (result.accepted, result.rejected) == (3, 1)
    assert "timestamps out of range" in result.errors[0]
    detail = p.session("s", "1")
    assert detail is not None and detail.turn_count == 3
    inputs = {t.id: t for t in detail.inference_results}
    assert inputs["2" * 16].input == "? and \ufffd too"
    assert inputs["2" * 16].metadata == {"x": "nan"}
    assert inputs["3" * 16].input_tokens is None


@pytest.fixture(scope="module")
def long_corpus() -> list[SpanData]:
    """Long sessions of both shapes, tool round trips with and without an agent, an explicit end marker, a trace
    shared by two sessions."""
    from .test_turns import _round_trip_without_agent, _tool_round_trips

    with sdk_tracer({"service.version": "9.9"}) as (tracer, exporter):
        conversation(tracer, "huge", "1", 25)  # one trace: a session span around every turn
        for i in range(15):  # one trace per request, no session span
            with tracer.start_as_current_span("POST /chat", attributes=key("web", "1")), \
                    tracer.start_as_current_span("chat", attributes={
                        **key("web", "1"), "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i,
                        "galtea.span.input": json.dumps(f"q{i}"), "galtea.span.output": json.dumps(f"a{i}")}):
                pass
        with tracer.start_as_current_span("end", attributes={**key("web", "1"), "galtea.session.event": "end"}):
            pass
        _round_trip_without_agent(tracer, 3)
        _tool_round_trips(tracer, 3)
        # One trace with an agent run and, beside it, a round trip without one: the rule is off in that trace.
        m = key("mixed", "1")
        tool_result = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]},
                                  {"role": "tool", "parts": [{"type": "tool_call_response", "response": "x"}]}])
        with tracer.start_as_current_span("request", attributes=m):
            agent = {**m, "gen_ai.operation.name": "invoke_agent"}
            with tracer.start_as_current_span("invoke_agent", attributes=agent), \
                    tracer.start_as_current_span("chat", attributes={**m, "gen_ai.operation.name": "chat"}):
                pass
            with tracer.start_as_current_span("step", attributes=m):
                for messages in (None, tool_result):
                    attributes = {**m, "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3}
                    if messages:
                        attributes["gen_ai.input.messages"] = messages
                    with tracer.start_as_current_span("chat", attributes=attributes):
                        pass
        # One trace shared by two sessions: a span of "outer" with children of "inner" (keyed) and an unkeyed
        # one (resolved from its parent) beside them, so a batch's spans have children of another session.
        outer, inner = key("outer", "1"), key("inner", "1")
        with tracer.start_as_current_span("request", attributes=outer), \
                tracer.start_as_current_span("chat", attributes={**outer, "gen_ai.operation.name": "chat"}):
            with tracer.start_as_current_span("delegate", attributes={**inner, "gen_ai.operation.name": "chat"}), \
                    tracer.start_as_current_span("lookup", attributes={**inner, "galtea.span.type": "TOOL"}):
                pass
            with tracer.start_as_current_span("unkeyed"):
                pass
        return collect(exporter)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_long_sessions_and_late_parents_give_the_same_records(
    tmp_path_factory: pytest.TempPathFactory, long_corpus: list[SpanData], data: st.DataObject
) -> None:
    """Incremental assembly (issue 9) stays a function of the set of spans: children before their parents
    (a late parent merges turns), any batching, replays, in every turn mode and late-span policy."""
    mode = data.draw(st.sampled_from(["user", "llm-call", "trace"]), label="turns")
    late = data.draw(st.sampled_from(["reopen", "ignore"]), label="late_spans")
    reference = _pipeline(tmp_path_factory.mktemp("ref") / "s.db", turns=mode, late_spans=late)
    reference.ingest(long_corpus)
    expected = _snapshot(reference)
    spans = data.draw(st.permutations(long_corpus), label="order")
    if data.draw(st.booleans(), label="parents last"):  # every child before its parent
        spans = sorted(spans, key=lambda s: -s.start_ns)
    spans = spans + data.draw(st.lists(st.sampled_from(long_corpus), max_size=20), label="duplicates")
    cuts = sorted(data.draw(st.sets(st.integers(1, len(spans) - 1), max_size=30), label="cuts"))
    p = _pipeline(tmp_path_factory.mktemp("perm") / "s.db", turns=mode, late_spans=late)
    start = 0
    for cut in [*cuts, len(spans)]:
        p.ingest(spans[start:cut])
        start = cut
    assert _snapshot(p) == expected


def test_a_trace_shared_by_two_sessions_gives_each_its_own_turns(tmp_path: Path, long_corpus: list[SpanData]) -> None:
    """The long corpus' shared trace (what the property test above reorders): "inner"'s spans under a span of
    "outer" are inner's turn, the unkeyed child is outer's, whichever comes first."""
    names = {s.span_id: s.name for s in long_corpus}
    for n, order in enumerate((long_corpus, sorted(long_corpus, key=lambda s: -s.start_ns))):
        p = _pipeline(tmp_path / f"{n}.db")
        for span in order:  # one span a batch: every parent comes in a batch of its own
            p.ingest([span])
        outer, inner = p.session("outer", "1"), p.session("inner", "1")
        assert outer is not None and inner is not None
        turns = {name: [(names[t.id], [s.name for s in t.spans]) for t in detail.inference_results]
                 for name, detail in (("outer", outer), ("inner", inner))}
        assert turns == {"outer": [("chat", ["unkeyed"])], "inner": [("delegate", ["lookup"])]}
