"""Evaluation records (issue 11, points 1-2): recorded in the app, or ingested from any producer's
``gen_ai.evaluation.result`` span events over real OTLP; stored in both stores, shown, filtered, migrated."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel
from galtea_otel.cli.main import main
from galtea_otel.decode.sdk import from_sdk
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.serve.server import Receiver
from galtea_otel.store import Store, open_store
from tests.conformance.conftest import DEFAULT_VERSION


@pytest.fixture
def app_store(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    galtea_otel.configure(url, tracer_provider=TracerProvider(shutdown_on_exit=False))
    yield url
    galtea_otel.shutdown()


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    reply = "hello " + prompt
    assert galtea_otel.record_evaluation("polite", score=0.9, label="pass", explanation="greets back")
    return reply


def test_the_app_scores_the_current_inference_or_the_session(app_store: str) -> None:
    assert not galtea_otel.record_evaluation("orphan", score=1)  # outside any session: nothing, no error
    with galtea_otel.session(custom_id="conv-e", version="1"):
        chat("alice")
        chat("bob")
        assert galtea_otel.record_evaluation("resolved", label="yes")
    with galtea_otel.session(custom_id="conv-low", version="1"):
        galtea_otel.record_evaluation("resolved", label="no", explanation="gave up")
        galtea_otel.record_evaluation("polite", score=0.2)
    assert galtea_otel.flush()
    store = open_store(app_store)
    detail = read_session(store, ("conv-e", "1"))
    assert detail is not None
    assert [(e.name, e.label, e.source, e.target) for e in detail.evaluations] == [
        ("resolved", "yes", "app", "session")]
    for turn in detail.inference_results:
        [evaluation] = turn.evaluations
        assert (evaluation.name, evaluation.score, evaluation.label, evaluation.explanation) == (
            "polite", 0.9, "pass", "greets back")
        assert (evaluation.target, evaluation.turn_id, evaluation.source) == ("turn", turn.id, "app")

    # Filtered listing: a session's own evaluation or one of its turns'.
    def listed(*filters: str) -> list[str]:
        return sorted(s.custom_id for s in store.list_sessions(evaluations=filters))
    assert listed("polite<0.5") == ["conv-low"]
    assert listed("polite>=0.5") == ["conv-e"]
    assert listed("resolved=yes") == ["conv-e"]
    assert listed("resolved!=yes", "polite<1") == ["conv-low"]
    assert listed("missing>0") == []
    store.close()

    # The CLI: --json carries them (additive fields), the text shows them, --eval filters, a bad filter is clear.
    runner = CliRunner()
    data = json.loads(runner.invoke(main, ["--store", app_store, "sessions", "show", "conv-e", "--json"]).output)
    assert [e["name"] for e in data["evaluations"]] == ["resolved"]
    assert [len(t["evaluations"]) for t in data["inference_results"]] == [1, 1]
    text = runner.invoke(main, ["--store", app_store, "sessions", "show", "conv-e"]).output
    assert "Evaluations of the session" in text and "polite  score 0.9  label pass" in text
    found = runner.invoke(main, ["--store", app_store, "sessions", "list", "--eval", "polite<0.5", "--json"])
    assert [s["custom_id"] for s in json.loads(found.output)] == ["conv-low"]
    bad = runner.invoke(main, ["--store", app_store, "sessions", "list", "--eval", "polite<high"])
    assert bad.exit_code == 2 and "not a number" in bad.output


def test_bad_arguments_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        galtea_otel.record_evaluation("", score=1)
    with pytest.raises(TypeError, match="finite number"):
        galtea_otel.record_evaluation("x", score=float("nan"))
    with pytest.raises(ValueError, match="score and/or a label"):
        galtea_otel.record_evaluation("x")


def test_a_foreign_producers_evaluation_events_arrive_over_otlp(receiver: Receiver, store: Store) -> None:
    assert receiver.http_address is not None
    endpoint = f"http://{receiver.http_address.host}:{receiver.http_address.port}/v1/traces"
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("someone-else")
    agent = {"gen_ai.conversation.id": "foreign-1", "gen_ai.operation.name": "invoke_agent"}
    call = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])}
    with tracer.start_as_current_span("invoke_agent", attributes=agent), \
            tracer.start_as_current_span("chat", attributes=call) as llm:
            llm.add_event("gen_ai.evaluation.result", {
                "gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.25,
                "gen_ai.evaluation.score.label": "not_relevant", "gen_ai.evaluation.explanation": "off topic"})
            llm.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "toxicity",
                                                       "error.type": "TimeoutError"})
            llm.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.score.value": 1})  # no name: counted
    provider.force_flush()
    detail = read_session(store, ("foreign-1", DEFAULT_VERSION))
    assert detail is not None and len(detail.inference_results) == 1
    [turn] = detail.inference_results
    assert [(e.name, e.score, e.label, e.explanation, e.error, e.source) for e in turn.evaluations] == [
        ("relevance", 0.25, "not_relevant", "off topic", None, "ingested"),
        ("toxicity", None, None, None, "TimeoutError", "ingested")]
    # A replay of the same spans stores nothing twice; a failed evaluation never matches a filter.
    Pipeline(store).ingest([from_sdk(s) for s in memory.get_finished_spans()])
    again = read_session(store, ("foreign-1", DEFAULT_VERSION))
    assert again is not None and len(again.inference_results[0].evaluations) == 2
    assert [s.custom_id for s in store.list_sessions(evaluations=["relevance<0.5"])] == ["foreign-1"]
    assert store.list_sessions(evaluations=["toxicity=TimeoutError"]) == []
    provider.shutdown()


def _spans_with_evaluation(custom_id: str) -> list:  # type: ignore[type-arg]
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("chat", attributes={
            "galtea.session.custom_id": custom_id, "galtea.session.version": "1",
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}) as span:
        span.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "ok", "gen_ai.evaluation.score.value": 3})
    return [from_sdk(s) for s in memory.get_finished_spans()]


def test_both_stores_keep_and_filter_evaluations(make_store: Callable[[], Store]) -> None:
    store = make_store()
    Pipeline(store).ingest(_spans_with_evaluation("both-1"))
    detail = read_session(store, ("both-1", "1"))
    assert detail is not None and [e.score for e in detail.inference_results[0].evaluations] == [3.0]
    assert [s.custom_id for s in store.list_sessions(evaluations=["ok>2"])] == ["both-1"]
    assert store.list_sessions(evaluations=["ok>3"]) == []


def test_a_store_without_the_evaluation_tables_gets_them_when_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "old.db") as conn:  # what a store of the previous release holds
        conn.execute("DROP TABLE evaluations")
        conn.execute("DROP TABLE evaluation_queue")
        conn.execute("ALTER TABLE spans DROP COLUMN evaluations")
    store = open_store(url)
    Pipeline(store).ingest(_spans_with_evaluation("migrated"))
    detail = read_session(store, ("migrated", "1"))
    assert detail is not None and [e.name for e in detail.inference_results[0].evaluations] == ["ok"]
    store.close()


def test_a_postgres_store_without_the_evaluation_tables_gets_them(pg_schemas: Callable[[], str]) -> None:
    import psycopg

    url = pg_schemas()
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE evaluations")
        conn.execute("DROP TABLE evaluation_queue")
        conn.execute("ALTER TABLE spans DROP COLUMN evaluations")
    store = open_store(url)
    Pipeline(store).ingest(_spans_with_evaluation("pg-migrated"))
    detail = read_session(store, ("pg-migrated", "1"))
    assert detail is not None and [e.name for e in detail.inference_results[0].evaluations] == ["ok"]
    store.close()


def test_people_annotate_a_session_or_a_turn_from_the_cli(app_store: str) -> None:
    with galtea_otel.session(custom_id="to-annotate", version="1"):
        chat("carol")
        chat("dave")
    assert galtea_otel.flush()
    runner = CliRunner()
    base = ["--store", app_store, "annotate", "to-annotate"]
    done = runner.invoke(main, [*base, "--turn", "1", "--name", "helpful", "--score", "0.3", "--note", "vague",
                                "--by", "ana"])
    assert done.exit_code == 0, done.output
    assert runner.invoke(main, [*base, "--name", "verdict", "--label", "fail"]).exit_code == 0
    assert runner.invoke(main, [*base, "--name", "x"]).exit_code == 2  # neither --score nor --label
    missing = runner.invoke(main, [*base, "--turn", "7", "--name", "x", "--score", "1"])
    assert missing.exit_code == 1 and "no turn 7" in missing.output
    store = open_store(app_store)
    detail = read_session(store, ("to-annotate", "1"))
    assert detail is not None
    assert [(e.name, e.label, e.source) for e in detail.evaluations] == [("verdict", "fail", "human")]
    human = [e for e in detail.inference_results[1].evaluations if e.source == "human"]
    assert [(e.name, e.score, e.explanation, e.evaluator.name if e.evaluator else None) for e in human] == [
        ("helpful", 0.3, "vague", "ana")]
    assert [s.custom_id for s in store.list_sessions(evaluations=["helpful<0.5"])] == ["to-annotate"]
    store.close()
