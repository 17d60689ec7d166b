"""A turn that changes after it was created on the platform is updated there (``PATCH inferenceResults/{id}``),
once per change, and spans arriving later under an already-created turn are sent; against the stand-in
(tests/fakes/galtea_api.py), which validates each update with the SDK's own ``TraceUpdate``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from galtea_otel import attributes as A
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import Store, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from galtea_otel.sync import payloads
from galtea_otel.sync.outbox import enqueue, open_outbox
from galtea_otel.sync.worker import SyncSummary, sync_once
from tests.fakes.galtea_api import FakeGaltea
from tests.pipeline.spans import collect, key, sdk_tracer
from tests.sync.conftest import PRODUCT, assert_delivered_exactly_once, sync_config

Fake = tuple[FakeGaltea, str]
VERSION = "1.0"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 's.db'}"
    else:
        url = str(request.getfixturevalue("pg_url")())
    opened = open_store(url)
    yield opened
    opened.close()


@contextmanager
def open_session(tracer: Tracer, custom_id: str) -> Iterator[Span]:
    """A session span (ended when the block ends: the session is PENDING until then) and its start marker."""
    k = key(custom_id, VERSION)
    session = tracer.start_span("galtea.session", attributes={**k, A.SPAN_TYPE: "SESSION"})
    with tracer.start_as_current_span("galtea.session.start", context=trace.set_span_in_context(session),
                                      attributes={**k, A.SESSION_EVENT: "start"}):
        pass
    try:
        yield session
    finally:
        session.end()


def llm_turn(tracer: Tracer, session: Span, custom_id: str, question: str) -> None:
    """A turn (an LLM span of the application) wrapping a retriever span and the client's LLM span, which holds
    the model, tokens and cost."""
    k = key(custom_id, VERSION)
    with tracer.start_as_current_span(
        "chat", context=trace.set_span_in_context(session),
        attributes={**k, A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: json.dumps(question)},
    ) as turn:
        with tracer.start_as_current_span("search", attributes={**k, A.SPAN_TYPE: "RETRIEVER"}):
            pass
        with tracer.start_as_current_span(
            "openai.chat",
            attributes={**k, "gen_ai.operation.name": "chat", "gen_ai.response.model": "gpt-test",
                        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                        "galtea.inference.cost": 0.001},
        ):
            pass
        turn.set_attribute(A.SPAN_OUTPUT, json.dumps({"answer": question}))


def writes(api: FakeGaltea, method: str | None = None, path: str | None = None) -> int:
    """Requests that changed or could have changed something (not GET), optionally of one method and path
    prefix, whatever their answer."""
    return sum(1 for m, p, _ in api.requests
               if m != "GET" and (method is None or m == method) and (path is None or p.startswith(path)))


def enqueue_again(store: Store, custom_id: str) -> None:
    """As if something had touched the session: it is in the outbox again, though nothing changed."""
    with store.transaction() as tx:
        enqueue(tx.sql, [(custom_id, VERSION, "default")], time.time_ns())


def only_turn(api: FakeGaltea, custom_id: str) -> dict[str, Any]:
    [remote] = api.session_by_custom_id(custom_id)
    [turn] = api.turns_of(remote["id"])
    return turn


def sync(store: Store, url: str) -> SyncSummary:
    summary = sync_once(store, sync_config(url), timeout_s=60)
    assert (summary.refused, summary.pending) == (0, 0), summary
    return summary


def test_a_turn_whose_llm_span_arrives_late_is_created_once_and_updated_once(fake: Fake, store: Store) -> None:
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter):
        with open_session(tracer, "conv-late") as session:
            llm_turn(tracer, session, "conv-late", "q0")
            spans = collect(exporter)
            late = [s for s in spans if s.name == "openai.chat"]
            pipeline.ingest([s for s in spans if s.name != "openai.chat"])

            # Sent while PENDING: the turn has no tokens nor cost yet.
            first = sync(store, url)
            assert (first.totals.turns_created, first.totals.turns_updated) == (1, 0)
            assert api.session_by_custom_id("conv-late")[0]["status"] == "PENDING"
            turn = only_turn(api, "conv-late")
            assert {"inputTokens", "outputTokens", "tokens", "cost"}.isdisjoint(turn)
            assert [s["name"] for s in api.spans_of(turn["id"])] == ["search"]

            # The client's LLM span arrives in a separate ingest: the same turn gets its tokens and cost, and
            # the late span is created under it.
            pipeline.ingest(late)
            second = sync(store, url)
            assert (second.totals.turns_created, second.totals.turns_found, second.totals.turns_updated,
                    second.totals.spans_created) == (0, 0, 1, 1)
            local = read_session(store, ("conv-late", VERSION))
            assert local is not None
            [local_turn] = local.inference_results
            assert (local_turn.input_tokens, local_turn.output_tokens, local_turn.cost) == (10, 5, 0.001)
            turn = only_turn(api, "conv-late")
            assert (turn["inputTokens"], turn["outputTokens"], turn["cost"]) == (10, 5, 0.001)
            assert turn.get("tokens") == local_turn.total_tokens
            assert sorted(s["name"] for s in api.spans_of(turn["id"])) == ["openai.chat", "search"]
            assert writes(api, "POST", "inferenceResults") == 1
            assert writes(api, "PATCH", "inferenceResults/") == 1
            [(_, path, body)] = [b for b in api.bodies if b[0] == "PATCH" and b[1].startswith("inferenceResults/")]
            assert path == f"inferenceResults/{turn['id']}"
            assert body == payloads.update_turn(local_turn)

            # Nothing changed: a second pass sends nothing.
            enqueue_again(store, "conv-late")
            before = writes(api)
            third = sync(store, url)
            assert (third.sent, third.already_there) == (0, 1)
            assert writes(api) == before
            exporter.clear()
        # The session ends: it is finished; the turn, unchanged, is not updated again.
        pipeline.ingest(collect(exporter))
    fourth = sync(store, url)
    assert (fourth.totals.turns_updated, fourth.totals.status_updates) == (0, 1)
    assert writes(api, "PATCH", "inferenceResults/") == 1
    assert api.session_by_custom_id("conv-late")[0]["status"] == "COMPLETED"
    assert_delivered_exactly_once(api, store)


def test_a_turn_that_fails_after_it_was_sent_becomes_failed_on_the_platform(fake: Fake, store: Store) -> None:
    """In ``trace`` turn mode a turn is a trace: a failed LLM call arriving after the turn was sent fails it."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    pipeline = Pipeline(store, PipelineSettings(turns="trace"), sync=True)
    k = key("conv-fail", VERSION)
    with sdk_tracer() as (tracer, exporter):
        with open_session(tracer, "conv-fail"):
            with tracer.start_as_current_span(
                "handle", context=trace.set_span_in_context(trace.INVALID_SPAN),
                attributes={**k, A.SPAN_INPUT: json.dumps("q0"), A.SPAN_OUTPUT: json.dumps("a0")},
            ):
                with tracer.start_as_current_span("lookup", attributes={**k, A.SPAN_TYPE: "TOOL"}):
                    pass
                with tracer.start_as_current_span(
                    "openai.chat", attributes={**k, "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3},
                ) as llm:
                    llm.set_status(Status(StatusCode.ERROR, "TimeoutError: upstream"))
            spans = collect(exporter)
            late = [s for s in spans if s.name == "openai.chat"]
            pipeline.ingest([s for s in spans if s.name != "openai.chat"])
            sync(store, url)
            turn = only_turn(api, "conv-fail")
            assert (turn["status"], turn.get("error")) == ("GENERATED", None)

            pipeline.ingest(late)
            summary = sync(store, url)
            assert (summary.totals.turns_created, summary.totals.turns_updated) == (0, 1)
            turn = only_turn(api, "conv-fail")
            assert turn["status"] == "FAILED" and "TimeoutError: upstream" in turn["error"]
            assert turn["inputTokens"] == 3
            exporter.clear()
        pipeline.ingest(collect(exporter))  # the session span: it ends
    sync(store, url)
    assert writes(api, "POST", "inferenceResults") == 1
    assert writes(api, "PATCH", "inferenceResults/") == 1
    assert_delivered_exactly_once(api, store)


def test_a_span_arriving_after_its_turn_was_created_is_sent_under_it(fake: Fake, tmp_path: Path) -> None:
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-span") as session:
        llm_turn(tracer, session, "conv-span", "q0")
        spans = collect(exporter)
        pipeline.ingest([s for s in spans if s.name != "search"])
        sync(store, url)
        turn = only_turn(api, "conv-span")
        assert [s["name"] for s in api.spans_of(turn["id"])] == ["openai.chat"]
        pipeline.ingest([s for s in spans if s.name == "search"])  # a tool span, late: the turn is unchanged
        summary = sync(store, url)
        assert (summary.totals.turns_created, summary.totals.turns_updated, summary.totals.spans_created) == (0, 0, 1)
        assert sorted(s["name"] for s in api.spans_of(turn["id"])) == ["openai.chat", "search"]
        assert api.duplicate_spans == 0
    store.close()


@pytest.mark.parametrize("mode", ["hang", "drop", "status"])
def test_a_turn_update_whose_answer_is_lost_is_sent_again_safely(fake: Fake, tmp_path: Path, mode: str) -> None:
    """``hang`` and ``drop`` apply the PATCH, then the answer is lost; ``status`` (500) refuses it first."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-retry") as session:
        llm_turn(tracer, session, "conv-retry", "q0")
        spans = collect(exporter)
        pipeline.ingest([s for s in spans if s.name != "openai.chat"])
        sync(store, url)
        pipeline.ingest([s for s in spans if s.name == "openai.chat"])
        fault = api.fail("PATCH", "inferenceResults/", mode, hang_s=1.0, times=2)
        sync(store, url)
        assert fault.times == 0
        assert writes(api, "PATCH", "inferenceResults/") == 3  # two lost or refused, one answered
        turn = only_turn(api, "conv-retry")
        assert (turn["inputTokens"], turn["cost"]) == (10, 0.001)
        # Re-sending the same update changes nothing on the platform.
        [(_, path, body)] = [b for b in api.bodies if b[0] == "PATCH" and b[1].startswith("inferenceResults/")][-1:]
        snapshot = json.dumps(api.turns, sort_keys=True)
        with api.lock:
            status, _ = api.handle("PATCH", path, {}, body)
        assert status == 200 and json.dumps(api.turns, sort_keys=True) == snapshot
        enqueue_again(store, "conv-retry")
        before = writes(api)
        assert sync(store, url).sent == 0
        assert writes(api) == before
        assert_delivered_exactly_once(api, store)
    store.close()


def test_a_turn_adopted_after_a_lost_answer_is_updated_only_if_it_differs(fake: Fake, tmp_path: Path) -> None:
    """The platform's turn was created (its answer lost) before the LLM span arrived: adopted, then updated."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-adopt") as session:
        llm_turn(tracer, session, "conv-adopt", "q0")
        spans = collect(exporter)
        pipeline.ingest([s for s in spans if s.name != "openai.chat"])
        api.fail("POST", "inferenceResults", "drop", times=1)  # created, then the connection drops
        first = sync_once(store, sync_config(url), timeout_s=0.01)  # one pass: the session is deferred
        assert first.pending == 1 and len(api.turns) == 1
        pipeline.ingest([s for s in spans if s.name == "openai.chat"])
        summary = sync(store, url)
        assert (summary.totals.turns_created, summary.totals.turns_found, summary.totals.turns_updated) == (0, 1, 1)
        assert writes(api, "POST", "inferenceResults") == 1
        assert writes(api, "PATCH", "inferenceResults/") == 1
        assert_delivered_exactly_once(api, store)
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_from_schema_v2_adds_the_turn_fingerprint_and_updates_old_turns_once(
    fake: Fake, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """A store of schema v2 (turns sent without a digest) is migrated in place; its records and sync state are
    kept; a turn sent by the older version is updated once (its state is unknown), then never again."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    store_url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(request.getfixturevalue("pg_url")())
    store = open_store(store_url)
    conninfo = getattr(store, "_conninfo", None)
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-v2") as session:
        llm_turn(tracer, session, "conv-v2", "q0")
        pipeline.ingest(collect(exporter))
        sync(store, url)
    store.close()

    statements = ["ALTER TABLE galtea_sync_turns DROP COLUMN fingerprint",
                  "UPDATE galtea_meta SET value = '2' WHERE key = 'schema_version'"]
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(tmp_path / "s.db")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
    else:
        import psycopg

        assert isinstance(conninfo, str)
        with psycopg.connect(conninfo, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)

    store = open_store(store_url)
    try:
        state = open_outbox(store).state(("conv-v2", VERSION))
        assert state is not None and state.platform_id is not None
        [turn_state] = state.turns.values()
        assert turn_state.fingerprint is None and turn_state.spans_sent
        if kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(tmp_path / "s.db")
            version = conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone()
            conn.close()
        else:
            with store._conn() as pg_conn:  # type: ignore[attr-defined]
                version = pg_conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)

        enqueue_again(store, "conv-v2")
        summary = sync(store, url)
        assert (summary.totals.turns_created, summary.totals.turns_updated) == (0, 1)
        enqueue_again(store, "conv-v2")
        assert sync(store, url).sent == 0
        assert writes(api, "POST", "inferenceResults") == 1
        assert_delivered_exactly_once(api, store)
    finally:
        store.close()


# --- exactly once when the turn changes under a lost answer, or changes identity ------------------------------------

def answered_turn(tracer: Tracer, session: Span, custom_id: str, question: str) -> None:
    """A turn whose application span (``chat``) has the input only: its output, tokens and cost come from the
    client's LLM span inside it (``openai.chat``), so they change when that span arrives late."""
    k = key(custom_id, VERSION)
    with tracer.start_as_current_span(
        "chat", context=trace.set_span_in_context(session),
        attributes={**k, A.SPAN_TYPE: "GENERATION", A.SPAN_INPUT: json.dumps(question)},
    ):
        with tracer.start_as_current_span("search", attributes={**k, A.SPAN_TYPE: "RETRIEVER"}):
            pass
        with tracer.start_as_current_span(
            "openai.chat",
            attributes={**k, "gen_ai.operation.name": "chat", A.SPAN_OUTPUT: json.dumps(f"answer to {question}"),
                        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
                        "galtea.inference.cost": 0.001},
        ):
            pass


def one_pass(store: Store, url: str) -> SyncSummary:
    """A single pass over the outbox: a session whose request failed stays deferred."""
    return sync_once(store, sync_config(url), timeout_s=0.01)


def intents(store: Store, custom_id: str) -> dict[str, dict[str, Any]]:
    state = open_outbox(store).state((custom_id, VERSION))
    assert state is not None
    return state.intents


@pytest.mark.parametrize("mode", ["hang", "drop", "drop_before"])
def test_a_turn_that_changed_after_its_creation_was_lost_is_adopted_by_its_intent(
    fake: Fake, store: Store, mode: str
) -> None:
    """``hang`` and ``drop`` create the turn and lose the answer; ``drop_before`` loses the request. Meanwhile the
    turn's output and tokens arrive, so the platform's turn no longer looks like the turn: it is found by the body
    that was sent (recorded before sending), adopted and updated; never created twice."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-intent") as session:
        answered_turn(tracer, session, "conv-intent", "q0")
        spans = collect(exporter)
        pipeline.ingest([s for s in spans if s.name != "openai.chat"])
        api.fail("POST", "inferenceResults", mode, hang_s=1.0, times=1)
        first = one_pass(store, url)
        assert first.pending == 1
        assert len(api.turns) == (0 if mode == "drop_before" else 1)
        [(tkey, intended)] = intents(store, "conv-intent").items()
        assert "actualOutput" not in intended and "inputTokens" not in intended
        if mode != "drop_before":
            [(_, _, sent)] = [b for b in api.bodies if b[:2] == ("POST", "inferenceResults")]
            assert sent == intended  # exactly what was sent

        pipeline.ingest([s for s in spans if s.name == "openai.chat"])  # the output and tokens arrive
        local = read_session(store, ("conv-intent", VERSION))
        assert local is not None
        [local_turn] = local.inference_results
        assert payloads.turn_key(local_turn) == tkey  # the same turn, changed
        assert local_turn.output == "answer to q0" and local_turn.input_tokens == 10
        assert not payloads.same_turn(next(iter(api.turns.values()), {}), payloads.create_turn(local_turn, "s"))

        summary = sync(store, url)
        found = mode != "drop_before"
        assert (summary.totals.turns_created, summary.totals.turns_found, summary.totals.turns_updated) == (
            (0, 1, 1) if found else (1, 0, 0))
        turn = only_turn(api, "conv-intent")
        assert (turn["actualOutput"], turn["inputTokens"], turn["outputTokens"], turn["cost"]) == (
            local_turn.output, 10, 5, 0.001)
        assert writes(api, "POST", "inferenceResults") == (1 if found else 2)
        assert intents(store, "conv-intent") == {}  # ended with the turn's id recorded
        enqueue_again(store, "conv-intent")
        assert sync(store, url).sent == 0
        assert_delivered_exactly_once(api, store)


@pytest.mark.parametrize("fault", [None, "drop", "hang"])
def test_a_turn_whose_head_changes_replaces_the_old_one_on_the_platform(
    fake: Fake, store: Store, fault: str | None
) -> None:
    """The client's LLM span is sent as a turn of its own; the application's span around it arrives later and
    becomes the turn's head: the turn sent under the old id is deleted from the platform (a DELETE whose answer
    is lost is sent again: its 404 counts as done) and the current turn created, once."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-head") as session:
        llm_turn(tracer, session, "conv-head", "q0")
        spans = collect(exporter)
        pipeline.ingest([s for s in spans if s.name == "openai.chat"])
        sync(store, url)
        old = only_turn(api, "conv-head")
        state = open_outbox(store).state(("conv-head", VERSION))
        assert state is not None
        [old_key] = state.turns

        pipeline.ingest([s for s in spans if s.name != "openai.chat"])  # "chat" supersedes "openai.chat"
        local = read_session(store, ("conv-head", VERSION))
        assert local is not None
        [local_turn] = local.inference_results
        assert local_turn.id != old_key.split(":")[1] and local_turn.input == "q0"
        if fault is not None:
            api.fail("DELETE", "inferenceResults/", fault, hang_s=1.0, times=1)
        summary = sync(store, url)
        assert (summary.totals.turns_deleted, summary.totals.turns_created) == (1, 1)
        turn = only_turn(api, "conv-head")
        assert turn["id"] != old["id"] and [t["id"] for t in api.deleted_turns] == [old["id"]]
        assert turn.get("input") == local_turn.input and turn["inputTokens"] == 10
        assert writes(api, "DELETE") == (1 if fault is None else 2)
        if fault is not None:
            assert ("DELETE", f"inferenceResults/{old['id']}", 404) in api.requests
        state = open_outbox(store).state(("conv-head", VERSION))
        assert state is not None and list(state.turns) == [payloads.turn_key(local_turn)]
        enqueue_again(store, "conv-head")
        assert sync(store, url).sent == 0
        assert_delivered_exactly_once(api, store)


def test_a_turn_whose_creation_was_lost_and_whose_head_changed_leaves_nothing_behind(
    fake: Fake, store: Store
) -> None:
    """The turn under its old id was created but the answer lost (only its intent is known), then its head
    changed: the platform turn matching the intent is deleted, the current turn created."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-gone") as session:
        llm_turn(tracer, session, "conv-gone", "q0")
        spans = collect(exporter)
        pipeline.ingest([s for s in spans if s.name == "openai.chat"])
        api.fail("POST", "inferenceResults", "drop", times=1)
        assert one_pass(store, url).pending == 1
        [lost] = api.turns.values()
        assert list(intents(store, "conv-gone"))
        pipeline.ingest([s for s in spans if s.name != "openai.chat"])
        summary = sync(store, url)
        assert (summary.totals.turns_deleted, summary.totals.turns_created, summary.totals.turns_found) == (1, 1, 0)
        assert [t["id"] for t in api.deleted_turns] == [lost["id"]]
        assert intents(store, "conv-gone") == {}
        assert_delivered_exactly_once(api, store)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_from_schema_v3_adds_the_intents_table(
    fake: Fake, tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    """A store of schema v3 (no galtea_sync_intents) is migrated in place, keeping its records and sync state."""
    api, url = fake
    api.add_version(PRODUCT, VERSION)
    store_url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else str(request.getfixturevalue("pg_url")())
    store = open_store(store_url)
    conninfo = getattr(store, "_conninfo", None)
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter), open_session(tracer, "conv-v3") as session:
        llm_turn(tracer, session, "conv-v3", "q0")
        pipeline.ingest(collect(exporter))
        sync(store, url)
    store.close()

    statements = ["DROP TABLE galtea_sync_intents", "UPDATE galtea_meta SET value = '3' WHERE key = 'schema_version'"]
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(tmp_path / "s.db")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
    else:
        import psycopg

        assert isinstance(conninfo, str)
        with psycopg.connect(conninfo, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)

    store = open_store(store_url)
    try:
        state = open_outbox(store).state(("conv-v3", VERSION))
        assert state is not None and state.platform_id is not None and state.intents == {}
        [turn_state] = state.turns.values()
        assert turn_state.fingerprint is not None
        open_outbox(store).save_intent(("conv-v3", VERSION), "t:x", {"input": "q"})  # the table is there
        assert intents(store, "conv-v3") == {"t:x": {"input": "q"}}
        open_outbox(store).forget_turn(("conv-v3", VERSION), "t:x")
        enqueue_again(store, "conv-v3")
        assert sync(store, url).sent == 0
        assert_delivered_exactly_once(api, store)
    finally:
        store.close()
