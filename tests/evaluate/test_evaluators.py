"""Evaluators that run when a conversation is over (issue 11, point 3): once per end, off the app's threads,
with errors and timeouts recorded, re-run (old results superseded) when a reopened session ends again, sampled
the same way in every process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import galtea_otel
from galtea_otel.decode.sdk import from_sdk
from galtea_otel.evaluate import storage
from galtea_otel.evaluate.evaluators import (
    Evaluator,
    failed_turn_rate,
    latency_budget,
    output_contains,
    output_is_json,
    output_matches,
    tool_call_failed,
)
from galtea_otel.evaluate.runner import EvaluationRunner
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SessionDetail
from galtea_otel.spandata import SpanData
from galtea_otel.store import Store, open_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'evals.db'}")
    yield opened
    opened.close()


def _conversation(custom_id: str, outputs: list[str], *, end: bool = True, start_ns: int = 10**18,
                  fail_tool: bool = False) -> list[SpanData]:
    """Spans of a conversation without a session span (one trace per turn), ended by an end marker."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    key = {"galtea.session.custom_id": custom_id, "galtea.session.version": "1"}
    at = start_ns
    for n, output in enumerate(outputs):
        span = tracer.start_span("chat", start_time=at, attributes={
            **key, "galtea.span.type": "GENERATION", "galtea.span.input": json.dumps(f"q{n}"),
            "galtea.span.output": json.dumps(output)})
        if fail_tool and n == 0:
            from opentelemetry import trace

            tool = tracer.start_span("lookup", context=trace.set_span_in_context(span), start_time=at + 1,
                                     attributes={**key, "galtea.span.type": "TOOL"})
            tool.set_status(Status(StatusCode.ERROR, "no such order"))
            tool.end(end_time=at + 2)
        span.end(end_time=at + 1_000_000)
        at += 10**9
    if end:
        marker = tracer.start_span("galtea.session.end", start_time=at, attributes={
            **key, "galtea.session.event": "end"})
        marker.end(end_time=at)
    return [from_sdk(s) for s in memory.get_finished_spans()]


def _drain(runner: EvaluationRunner, store: Store) -> None:
    runner.start(store)
    assert runner.stop(timeout_s=60)


def test_each_end_is_evaluated_once_and_a_reopened_session_again(store: Store) -> None:
    calls: list[tuple[str, int, str]] = []

    def turns(detail: SessionDetail) -> list[dict[str, Any]]:
        calls.append((detail.custom_id, len(detail.inference_results), threading.current_thread().name))
        return [{"turn": t.index, "score": float(len(t.output or ""))} for t in detail.inference_results] + [
            {"name": "count", "score": len(detail.inference_results)}]

    runner = EvaluationRunner([turns])
    pipeline = Pipeline(store, evaluate=True)
    spans = _conversation("c1", ["ab", "abcd"])
    pipeline.ingest(spans)
    pipeline.ingest(_conversation("open", ["x"], end=False))  # still PENDING: not evaluated
    _drain(runner, store)
    assert [(c, n) for c, n, _ in calls] == [("c1", 2)]
    assert calls[0][2] != threading.current_thread().name  # never the caller's thread
    pipeline.ingest(spans)  # a replay of the same end: no second run
    _drain(runner, store)
    assert len(calls) == 1
    detail = read_session(store, ("c1", "1"))
    assert detail is not None
    assert [(e.name, e.score, e.source) for e in detail.evaluations] == [("count", 2.0, "evaluator")]
    assert [[e.score for e in t.evaluations] for t in detail.inference_results] == [[2.0], [4.0]]

    # A late turn reopens the session; its new end runs the evaluator again; the first results are superseded.
    late = _conversation("c1", ["abcdef"], start_ns=10**18 + 10 * 10**9)
    pipeline.ingest(late)
    _drain(runner, store)
    assert [(c, n) for c, n, _ in calls] == [("c1", 2), ("c1", 3)]
    detail = read_session(store, ("c1", "1"))
    assert detail is not None
    assert sorted((e.score, e.superseded) for e in detail.evaluations) == [(2.0, True), (3.0, False)]
    assert [s.custom_id for s in store.list_sessions(evaluations=["count=2"])] == []  # superseded: not current
    assert [s.custom_id for s in store.list_sessions(evaluations=["count=3"])] == ["c1"]
    assert storage.queue_counts(store) == {"done": 1}


def test_an_evaluator_that_raises_or_times_out_leaves_its_error(store: Store) -> None:
    release = threading.Event()

    def broken(detail: SessionDetail) -> None:
        raise RuntimeError("judge unavailable")

    def stuck(detail: SessionDetail) -> None:
        release.wait(60)

    async def slow_async(detail: SessionDetail) -> dict[str, Any]:
        await asyncio.sleep(60)
        return {"score": 1}

    async def fine_async(detail: SessionDetail) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"label": "ok"}

    def wrong(detail: SessionDetail) -> list[str]:
        return ["not an evaluation"]

    runner = EvaluationRunner([broken, Evaluator(stuck, timeout_s=0.2), Evaluator(slow_async, timeout_s=0.2),
                               fine_async, wrong])
    Pipeline(store, evaluate=True).ingest(_conversation("e1", ["x"]))
    try:
        _drain(runner, store)
    finally:
        release.set()
    detail = read_session(store, ("e1", "1"))
    assert detail is not None
    got = {e.name: (e.label, e.error) for e in detail.evaluations}
    assert got["broken"] == (None, "RuntimeError: judge unavailable")
    assert got["stuck"][1] is not None and got["stuck"][1].startswith("TimeoutError")
    assert got["slow_async"][1] is not None and got["slow_async"][1].startswith("TimeoutError")
    assert got["fine_async"] == ("ok", None)
    assert got["wrong"][1] is not None and got["wrong"][1].startswith("TypeError")


_CHOSEN = "from galtea_otel.evaluate.evaluators import Evaluator\n" \
    "e = Evaluator(lambda d: None, name='judge', sample_rate=0.3)\n" \
    "print(','.join(str(i) for i in range(400) if e.chosen((f'conv-{i}', '1'))))\n"


def test_sampling_picks_the_same_sessions_in_every_process(store: Store) -> None:
    runs = [subprocess.run([sys.executable, "-c", _CHOSEN], capture_output=True, text=True, cwd=ROOT,
                           timeout=60, check=True).stdout.strip() for _ in range(2)]
    evaluator = Evaluator(lambda d: {"score": 1}, name="judge", sample_rate=0.3)
    here = ",".join(str(i) for i in range(400) if evaluator.chosen((f"conv-{i}", "1")))
    assert runs[0] == runs[1] == here
    assert 60 < len(here.split(",")) < 180  # about 30 % of 400
    pipeline = Pipeline(store, evaluate=True)
    for i in range(20):
        pipeline.ingest(_conversation(f"conv-{i}", ["x"]))
    _drain(EvaluationRunner([evaluator]), store)
    scored = {s.custom_id for s in store.list_sessions(evaluations=["judge=1"], limit=100)}
    assert scored == {f"conv-{i}" for i in range(20) if evaluator.chosen((f"conv-{i}", "1"))}


def test_the_built_in_evaluators(store: Store) -> None:
    Pipeline(store, evaluate=True).ingest(_conversation("b1", ['{"ok": true}', "Sorry, no refund"],
                                                        fail_tool=True))
    _drain(EvaluationRunner([failed_turn_rate(), latency_budget(0.5), output_contains("refund"),
                             output_matches(r"^\{"), output_is_json(), tool_call_failed()]), store)
    detail = read_session(store, ("b1", "1"))
    assert detail is not None
    session = {e.name: (e.score, e.label) for e in detail.evaluations}
    assert session == {"failed_turn_rate": (0.0, None), "tool_call_failed": (1.0, "failed")}
    per_turn = [{e.name: e.label for e in t.evaluations} for t in detail.inference_results]
    assert per_turn == [
        {"latency_budget": "fail", "output_contains": "fail", "output_matches": "pass", "output_is_json": "pass"},
        {"latency_budget": "fail", "output_contains": "pass", "output_matches": "fail", "output_is_json": "fail"},
    ]


def test_configure_runs_evaluators_in_the_app_and_shutdown_waits_for_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    threads: list[str] = []

    def helpful(detail: SessionDetail) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"score": 0.75, "explanation": f"{len(detail.inference_results)} turn(s)"}

    galtea_otel.configure(url, tracer_provider=TracerProvider(shutdown_on_exit=False), evaluators=[helpful])
    chat = galtea_otel.inference(model="m")(lambda prompt: "hi " + prompt)
    with galtea_otel.session(custom_id="app-1", version="1"):
        chat("there")
    assert galtea_otel.shutdown()
    assert threads and threads[0] != threading.current_thread().name
    opened = open_store(url)
    detail = read_session(opened, ("app-1", "1"))
    opened.close()
    assert detail is not None
    assert [(e.name, e.score, e.explanation) for e in detail.evaluations] == [("helpful", 0.75, "1 turn(s)")]
    with pytest.raises(ValueError, match="evaluators= needs the default exporter"):
        galtea_otel.configure(exporter=InMemorySpanExporter(), evaluators=[helpful])


def test_an_llm_judge_scores_the_session_through_an_openai_compatible_endpoint(store: Store) -> None:
    from galtea_otel.evaluate.judge import llm_judge
    from tests.fakes.openai_server import FakeOpenAI

    def verdict(messages: list[dict[str, Any]]) -> str:
        conversation = messages[-1]["content"].split("Conversation:")[1]
        refund = "refund" in conversation
        return "Verdict: " + json.dumps({"score": 0.2 if refund else 0.9,
                                         "explanation": "mentions a refund" if refund else "fine"})

    with FakeOpenAI(model_suffix="", replier=verdict) as fake:
        judge = llm_judge("Score 1 when the assistant never promises a refund.", model="gpt-4o-mini",
                          base_url=fake.base_url, api_key="test")
        pipeline = Pipeline(store, evaluate=True)
        pipeline.ingest(_conversation("j-good", ["hello"]))
        pipeline.ingest(_conversation("j-bad", ["a refund is on its way"]))
        _drain(EvaluationRunner([judge]), store)
        assert len(fake.requests) == 2
        asked = fake.requests[0]["messages"]
        assert asked[0]["role"] == "system" and "Rubric:" in asked[1]["content"]
    bad = read_session(store, ("j-bad", "1"))
    assert bad is not None
    [evaluation] = bad.evaluations
    assert (evaluation.name, evaluation.score, evaluation.explanation) == ("llm_judge", 0.2, "mentions a refund")
    meta = evaluation.metadata
    assert meta["model"] == "gpt-4o-mini" and meta["input_tokens"] > 0 and meta["output_tokens"] > 0
    assert meta["cost"] is None or meta["cost"] > 0  # priced from the table when genai-prices is installed
    assert [s.custom_id for s in store.list_sessions(evaluations=["llm_judge<0.5"])] == ["j-bad"]


def test_a_judge_reply_without_a_score_is_an_error_evaluation(store: Store) -> None:
    from galtea_otel.evaluate.judge import llm_judge, parse_verdict
    from tests.fakes.openai_server import FakeOpenAI

    assert parse_verdict('noise {"a": 1} then {"score": 0.5, "explanation": "ok"}') == (0.5, "ok")
    assert parse_verdict("Score: 0.7 because")[0] == 0.7
    with FakeOpenAI(replier=lambda messages: "I cannot decide.") as fake:
        Pipeline(store, evaluate=True).ingest(_conversation("j-none", ["x"]))
        _drain(EvaluationRunner([llm_judge("rubric", model="m", base_url=fake.base_url)]), store)
    detail = read_session(store, ("j-none", "1"))
    assert detail is not None
    [evaluation] = detail.evaluations
    assert evaluation.error is not None and "holds no score" in evaluation.error


def test_the_runner_on_both_stores(make_store: Any) -> None:
    shared = make_store()
    pipeline = Pipeline(shared, evaluate=True)
    pipeline.ingest(_conversation("s1", ["ab"]))
    runner = EvaluationRunner([lambda d: {"name": "n", "score": len(d.inference_results)}])
    _drain(runner, shared)
    pipeline.ingest(_conversation("s1", ["abc"], start_ns=10**18 + 10 * 10**9))  # reopened, ended again
    _drain(runner, shared)
    detail = read_session(shared, ("s1", "1"))
    assert detail is not None
    assert sorted((e.score, e.superseded) for e in detail.evaluations) == [(1.0, True), (2.0, False)]
    assert storage.queue_counts(shared) == {"done": 1}
    assert [s.custom_id for s in shared.list_sessions(evaluations=["n>=2"])] == ["s1"]
