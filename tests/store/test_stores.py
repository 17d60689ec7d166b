"""The store contract, run against both stores (SQLite and PostgreSQL) through the real pipeline.

Spans come from the real OpenTelemetry SDK (``InMemorySpanExporter``) through ``galtea_otel.decode.sdk``.
PostgreSQL: ``GALTEA_OTEL_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/test``); each test
gets schemas of its own in that database. Without a reachable server the PostgreSQL cases are skipped, except
under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from galtea_otel import attributes as A
from galtea_otel.decode.sdk import from_sdk
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import TestCase
from galtea_otel.settings import PipelineSettings
from galtea_otel.spandata import EventData, SpanData
from galtea_otel.store import Store, StoreError, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from tests.needs import need_module, unavailable

PG_URL = os.environ.get("GALTEA_OTEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[2]
MINUTE_NS = 60 * 10**9


# --- PostgreSQL plumbing ------------------------------------------------------------------------------------

def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)


_pg_state: dict[str, str | None] = {}


def _require_pg() -> None:
    if "error" not in _pg_state:
        try:
            with _pg_admin() as conn:
                conn.execute("SELECT 1")
            _pg_state["error"] = None
        except Exception as exc:
            _pg_state["error"] = f"PostgreSQL at {PG_URL} is not reachable: {exc}"
    error = _pg_state["error"]
    if error is not None:
        unavailable(error)


def _with_params(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def _with_password(url: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, at, hosts = rest.partition("@")
    if not at:
        userinfo, hosts = "postgres", rest
    return f"{scheme}://{userinfo.split(':')[0]}:{password}@{hosts}"


def _schema_url(schema: str) -> str:
    return _with_params(PG_URL, options=f"-csearch_path={schema}")


@pytest.fixture
def pg_schemas() -> Iterator[Callable[[], str]]:
    """Make fresh PostgreSQL schemas (dropped after the test); returns their URLs."""
    _require_pg()
    made: list[str] = []

    def make() -> str:
        schema = f"galtea_test_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        made.append(schema)
        return _schema_url(schema)

    yield make
    with _pg_admin() as conn:
        for schema in made:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A factory of fresh, empty stores of one kind; all are closed after the test."""
    opened: list[Store] = []
    if request.param == "postgresql":
        make_schema = request.getfixturevalue("pg_schemas")

        def new_url() -> str:
            return str(make_schema())
    else:
        counter = iter(range(1000))

        def new_url() -> str:
            return f"sqlite:///{tmp_path / f'store{next(counter)}.db'}"

    def make() -> Store:
        store = open_store(new_url())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()


def row_counts(store: Store) -> dict[str, int]:
    """Rows per table, read with the database's own client (the store interface has no such question)."""
    tables = ("spans", "sessions", "test_cases", "counters")
    if store.url.startswith(("postgresql", "postgres")):
        conninfo = store._conninfo  # type: ignore[attr-defined]
        import psycopg

        with psycopg.connect(conninfo) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        conn.close()


def snapshot(store: Store) -> dict[str, Any]:
    """Everything a reader can see: the sessions table (in list order) and every session's full record."""
    sessions = store.list_sessions(limit=1_000_000)
    keys = [(s.custom_id, s.version) for s in sessions]
    details = {}
    for key in keys:
        detail = read_session(store, key)
        details[key] = detail.model_dump() if detail is not None else None
    return {"sessions": [s.model_dump() for s in sessions], "details": details,
            "rows": {k: sorted((r.trace_id, r.span_id) for r in store.read_session_rows(k)) for k in keys}}


# --- spans from the real OpenTelemetry SDK ------------------------------------------------------------------

class SpanMaker:
    """Produces finished spans with the OpenTelemetry SDK and hands them over as ``SpanData``."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self._providers: dict[str | None, TracerProvider] = {}

    def tracer(self, service_version: str | None = None) -> Any:
        provider = self._providers.get(service_version)
        if provider is None:
            attrs = {"service.name": "store-tests"}
            if service_version is not None:
                attrs["service.version"] = service_version
            provider = TracerProvider(resource=Resource.create(attrs))
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            self._providers[service_version] = provider
        return provider.get_tracer("store-tests")

    def take(self) -> list[SpanData]:
        spans = [plain(from_sdk(s)) for s in self.exporter.get_finished_spans()]
        self.exporter.clear()
        return spans

    def close(self) -> None:
        for provider in self._providers.values():
            provider.shutdown()


def plain(span: SpanData) -> SpanData:
    """The same span with plain dicts (picklable, independent of the SDK's objects)."""
    return dataclasses.replace(
        span, attributes=dict(span.attributes), resource=dict(span.resource),
        events=tuple(EventData(e.name, e.time_ns, dict(e.attributes)) for e in span.events))


@pytest.fixture
def maker() -> Iterator[SpanMaker]:
    m = SpanMaker()
    yield m
    m.close()


def keyed(custom_id: str, version: str | None = None, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {A.SESSION_CUSTOM_ID: custom_id, **extra}
    if version is not None:
        attrs[A.SESSION_VERSION] = version
    return attrs


def llm(i: int, **extra: Any) -> dict[str, Any]:
    return {A.GEN_AI_OPERATION_NAME: "chat", A.GEN_AI_REQUEST_MODEL: "gpt-test",
            A.SPAN_INPUT: f"question {i}", A.SPAN_OUTPUT: f"answer {i}",
            A.GEN_AI_INPUT_TOKENS: 10 + i, A.GEN_AI_OUTPUT_TOKENS: 20 + i,
            A.INFERENCE_COST: 0.001 * (i + 1), **extra}


def conversations(maker: SpanMaker, n_sessions: int, seed: int) -> list[SpanData]:
    """``n_sessions`` conversations of several traces each (~10 spans per session), where the session key sits
    on only some spans, so that most spans get theirs by resolution (ancestor or trace). Some sessions end
    (end marker, OK or failed), some stay PENDING; versions come from spans, from the resource, or not at all;
    one custom id has two versions."""
    rng = random.Random(seed)
    for i in range(n_sessions):
        custom_id = f"conv-{seed}-{i % (n_sessions - 1) if i else 0:03d}"  # the last reuses conv-...-000
        style = i % 4
        span_version = f"v{i % 3}" if style in (0, 1) else None
        if i == n_sessions - 1:
            span_version = "v-other"
        tracer = maker.tracer("res-1.0" if style == 2 else None)
        for turn in range(rng.randint(2, 3)):
            key = keyed(custom_id, span_version)
            with tracer.start_as_current_span("handle_request",
                                              attributes=key if style == 1 else {"http.route": "/chat"}):
                with tracer.start_as_current_span("retrieve", attributes={A.SPAN_TYPE: "RETRIEVER"}):
                    pass
                chat_attrs = llm(turn, **(key if style in (0, 2) else {}))
                with tracer.start_as_current_span("chat", attributes=chat_attrs) as chat:
                    with tracer.start_as_current_span("tool", attributes={A.SPAN_TYPE: "TOOL"}) as tool:
                        if style == 3:
                            tool.set_attributes(key)  # the key only on a grandchild: the trace's key
                    if rng.random() < 0.15:
                        chat.set_status(Status(StatusCode.ERROR, f"model error {turn}"))
        ending = rng.random()
        if ending < 0.7:
            attrs = keyed(custom_id, span_version, **{A.SESSION_EVENT: "end"})
            with tracer.start_as_current_span("galtea.session.end", attributes=attrs) as end:
                if ending < 0.2:
                    end.set_status(Status(StatusCode.ERROR, "session crashed"))
    # A trace whose key never comes: held.
    with (maker.tracer().start_as_current_span("orphan-root"),
          maker.tracer().start_as_current_span("orphan-chat", attributes=llm(0))):
        pass
    return maker.take()


def split_batches(
    spans: Sequence[SpanData], rng: random.Random, low: int = 1, high: int = 8
) -> list[list[SpanData]]:
    batches, i = [], 0
    while i < len(spans):
        size = rng.randint(low, high)
        batches.append(list(spans[i:i + size]))
        i += size
    return batches


# --- invariants ---------------------------------------------------------------------------------------------

def test_replay_changes_nothing(store: Store, maker: SpanMaker) -> None:
    spans = conversations(maker, 12, seed=1)
    pipeline = Pipeline(store)
    first = pipeline.ingest(spans)
    assert first.accepted == len(spans) and first.duplicates == 0 and first.rejected == 0
    before, counts = snapshot(store), row_counts(store)
    assert counts["spans"] == len(spans)
    assert len(before["sessions"]) == 12

    again = pipeline.ingest(spans)
    assert (again.accepted, again.duplicates, again.sessions) == (0, len(spans), 0)
    rng = random.Random(7)
    shuffled = list(spans) * 2
    rng.shuffle(shuffled)
    for batch in split_batches(shuffled, rng, 1, 40):
        assert pipeline.ingest(batch).accepted == 0
    assert snapshot(store) == before
    assert row_counts(store) == counts


def test_reverse_one_at_a_time_equals_one_ingest(make_store: Callable[[], Store], maker: SpanMaker) -> None:
    spans = conversations(maker, 8, seed=2)
    together, apart = make_store(), make_store()
    Pipeline(together).ingest(spans)
    pipeline = Pipeline(apart)
    for span in reversed(spans):
        assert pipeline.ingest([span]).accepted == 1
    expected = snapshot(together)
    assert len(expected["sessions"]) == 8
    assert snapshot(apart) == expected
    assert row_counts(apart) == row_counts(together)


@pytest.mark.parametrize("seed", [3, 4])
def test_any_batching_and_duplication_gives_the_same_records(
    make_store: Callable[[], Store], maker: SpanMaker, seed: int
) -> None:
    spans = conversations(maker, 6, seed=seed)
    reference = make_store()
    Pipeline(reference).ingest(spans)
    rng = random.Random(seed)
    mixed = list(spans) + rng.sample(spans, len(spans) // 2)
    rng.shuffle(mixed)
    other = make_store()
    pipeline = Pipeline(other)
    for batch in split_batches(mixed, rng, 1, 6):
        pipeline.ingest(batch)
    assert snapshot(other) == snapshot(reference)
    assert row_counts(other) == row_counts(reference)


def test_trace_contexts_reads_no_row_the_caller_has(store: Store, maker: SpanMaker) -> None:
    """The look-up incremental assembly makes of a batch's traces: the rows of the span ids, of their parents
    and of their children, except those the caller holds already (``known``: a batch just inserted), children
    included; with nothing known, all of them."""
    tracer = maker.tracer()
    with (tracer.start_as_current_span("root", attributes=keyed("ctx", "v1")),
          tracer.start_as_current_span("chat", attributes=llm(0))):
        with tracer.start_as_current_span("tool-a"), tracer.start_as_current_span("grandchild"):
            pass
        with tracer.start_as_current_span("tool-b"):
            pass
    Pipeline(store).ingest(maker.take())
    rows = {r.name: r for r in store.read_session_rows(("ctx", "v1"))}
    assert set(rows) == {"root", "chat", "tool-a", "tool-b", "grandchild"}
    trace = rows["chat"].trace_id
    request = [(trace, [rows["chat"].span_id], [rows["root"].span_id])]
    columns = ("trace_id", "span_id", "parent_span_id", "name")
    with store.transaction() as tx:
        everything = tx.trace_contexts(request, columns)
        known = {(trace, rows[name].span_id) for name in ("chat", "tool-a")}
        partial = tx.trace_contexts(request, columns, known)
    assert len(everything) == len(partial) == 1
    assert sorted(r[3] for r in everything[0]) == ["chat", "root", "tool-a", "tool-b"]  # no grandchild
    assert sorted(r[3] for r in partial[0]) == ["root", "tool-b"]
    assert {r[3]: r[2] for r in partial[0]} == {"root": None, "tool-b": rows["chat"].span_id}


def test_the_next_sweep_falls_due_at_an_idle_close_or_at_the_end_of_a_hold(store: Store, maker: SpanMaker) -> None:
    """What a deferred receiver asks before it starts its assembler, and the assembler before it leaves
    (``Pipeline.next_sweep_ns``): an empty store has no sweep due; a PENDING session's falls due the nanosecond
    its idle close passes, a held trace's the nanosecond its hold does (a sweep one nanosecond earlier does
    nothing); once swept, what it made is due in turn (the held LLM span became a session of its own)."""
    pipeline = Pipeline(store, PipelineSettings(idle_close_minutes=1.0, hold_seconds=5.0))
    assert pipeline.next_sweep_ns() is None
    tracer = maker.tracer()
    with (tracer.start_as_current_span("root", attributes=keyed("open", "v1")),
          tracer.start_as_current_span("chat", attributes=llm(0))):
        pass
    spans = maker.take()
    pipeline.ingest(spans)
    due = pipeline.next_sweep_ns()
    assert due == max(s.end_ns for s in spans) + 60 * 10**9 + 1
    assert pipeline.sweep(now_ns=due - 1)["idle_closed"] == 0 and pipeline.next_sweep_ns() == due
    assert pipeline.sweep(now_ns=due)["idle_closed"] == 1
    assert [s.status for s in store.list_sessions()] == ["COMPLETED"] and pipeline.next_sweep_ns() is None
    with tracer.start_as_current_span("unkeyed", attributes=llm(1)):
        pass
    held = maker.take()
    before = time.time_ns()
    pipeline.ingest(held)
    after = time.time_ns()
    due = pipeline.next_sweep_ns()
    assert due is not None and before + 5 * 10**9 + 1 <= due <= after + 5 * 10**9 + 1
    assert pipeline.sweep(now_ns=due - 1)["orphan_sessions"] == 0
    assert pipeline.sweep(now_ns=due)["orphan_sessions"] == 1
    assert pipeline.next_sweep_ns() == held[0].end_ns + 60 * 10**9 + 1  # the orphan session's idle close


def test_unkeyed_child_before_keyed_root_gets_its_key(store: Store, maker: SpanMaker) -> None:
    tracer = maker.tracer()
    with (tracer.start_as_current_span("root", attributes=keyed("late-key", "v1")),
          tracer.start_as_current_span("chat", attributes=llm(0)),
          tracer.start_as_current_span("tool", attributes={A.SPAN_TYPE: "TOOL"})):
        pass
    tool, chat, root = maker.take()  # the SDK finishes children first
    assert root.attributes.get(A.SESSION_CUSTOM_ID) == "late-key" and chat.parent_span_id == root.span_id
    pipeline = Pipeline(store)
    pipeline.ingest([tool])
    pipeline.ingest([chat])
    assert store.find_session_key("late-key") is None
    assert store.list_sessions() == []
    pipeline.ingest([root])
    assert store.find_session_key("late-key") == ("late-key", "v1", "default")
    rows = store.read_session_rows(("late-key", "v1"))
    assert sorted(r.span_id for r in rows) == sorted([tool.span_id, chat.span_id, root.span_id])
    detail = pipeline.session("late-key")
    assert detail is not None and detail.turn_count == 1
    turn = detail.inference_results[0]
    assert (turn.id, turn.input, turn.output) == (chat.span_id, "question 0", "answer 0")
    assert turn.model == "gpt-test"
    assert [s.id for s in turn.spans] == [tool.span_id]


def test_pending_then_completed_or_failed(store: Store, maker: SpanMaker) -> None:
    tracer = maker.tracer()
    pipeline = Pipeline(store)
    for custom_id in ("ends-ok", "ends-failed", "session-span-failed"):
        with tracer.start_as_current_span("galtea.session.start",
                                          attributes=keyed(custom_id, "1", **{A.SESSION_EVENT: "start"})):
            pass
    pipeline.ingest(maker.take())
    assert {s.custom_id: s.status for s in store.list_sessions()} == {
        "ends-ok": "PENDING", "ends-failed": "PENDING", "session-span-failed": "PENDING"}

    for custom_id in ("ends-ok", "ends-failed"):
        with (tracer.start_as_current_span("request", attributes=keyed(custom_id, "1")),
              tracer.start_as_current_span("chat", attributes=llm(1))):
            pass
    pipeline.ingest(maker.take())
    assert all(s.status == "PENDING" and s.turn_count == (0 if s.custom_id == "session-span-failed" else 1)
               for s in store.list_sessions())

    end_event = {A.SESSION_EVENT: "end"}
    with tracer.start_as_current_span("galtea.session.end", attributes=keyed("ends-ok", "1", **end_event)):
        pass
    with tracer.start_as_current_span("galtea.session.end",
                                      attributes=keyed("ends-failed", "1", **end_event)) as end:
        end.set_status(Status(StatusCode.ERROR, "user went away angry"))
    session_attrs = keyed("session-span-failed", "1", **{A.SPAN_TYPE: "SESSION"})
    with tracer.start_as_current_span("conversation", attributes=session_attrs) as s:
        with tracer.start_as_current_span("chat", attributes=llm(2)):
            pass
        s.set_status(Status(StatusCode.ERROR, "the session raised"))
    pipeline.ingest(maker.take())
    by_id = {s.custom_id: s for s in store.list_sessions()}
    assert (by_id["ends-ok"].status, by_id["ends-ok"].error) == ("COMPLETED", None)
    assert by_id["ends-ok"].ended_at is not None
    assert (by_id["ends-failed"].status, by_id["ends-failed"].error) == ("FAILED", "user went away angry")
    assert (by_id["session-span-failed"].status, by_id["session-span-failed"].error) == (
        "FAILED", "the session raised")
    assert by_id["session-span-failed"].turn_count == 1


def test_sweep_closes_idle_sessions(store: Store, maker: SpanMaker) -> None:
    pipeline = Pipeline(store, PipelineSettings(idle_close_minutes=30))
    tracer = maker.tracer()
    for custom_id in ("idle-a", "idle-b"):
        with tracer.start_as_current_span("chat", attributes=llm(0, **keyed(custom_id, "v"))):
            pass
    pipeline.ingest(maker.take())
    assert {s.status for s in store.list_sessions()} == {"PENDING"}
    now = time.time_ns()
    assert pipeline.sweep(now_ns=now + 5 * MINUTE_NS)["idle_closed"] == 0
    assert {s.status for s in store.list_sessions()} == {"PENDING"}
    later = now + 31 * MINUTE_NS
    assert pipeline.sweep(now_ns=later) == {"idle_closed": 2, "orphan_sessions": 0, "orphans_dropped": 0}
    sessions = store.list_sessions()
    assert {s.status for s in sessions} == {"COMPLETED"}
    assert all(s.ended_at is not None and abs(s.ended_at.timestamp() * 1e9 - later) < 1e6 for s in sessions)
    assert store.counters() == {"idle_closed": 2}
    before = snapshot(store)
    assert pipeline.sweep(now_ns=later + MINUTE_NS)["idle_closed"] == 0
    assert snapshot(store) == before


@pytest.mark.parametrize("orphans", ["session", "drop"])
def test_sweep_settles_held_orphan_traces(store: Store, maker: SpanMaker, orphans: str) -> None:
    settings = PipelineSettings(orphans=orphans, hold_seconds=60)  # type: ignore[arg-type]
    pipeline = Pipeline(store, settings)
    with (maker.tracer("7.1").start_as_current_span("request"),
          maker.tracer("7.1").start_as_current_span("chat", attributes=llm(0))):
        pass
    with_llm = maker.take()
    with (maker.tracer().start_as_current_span("no-llm-request"),
          maker.tracer().start_as_current_span("tool", attributes={A.SPAN_TYPE: "TOOL"})):
        pass
    without_llm = maker.take()
    pipeline.ingest(with_llm + without_llm)
    assert store.list_sessions() == [] and row_counts(store)["spans"] == 4
    now = time.time_ns()
    assert pipeline.sweep(now_ns=now) == {"idle_closed": 0, "orphan_sessions": 0, "orphans_dropped": 0}
    counts = pipeline.sweep(now_ns=now + 2 * MINUTE_NS)
    trace_id = with_llm[0].trace_id
    if orphans == "session":
        assert counts == {"idle_closed": 0, "orphan_sessions": 1, "orphans_dropped": 2}
        [session] = store.list_sessions()
        assert (session.custom_id, session.version, session.turn_count) == (trace_id, "7.1", 1)
        assert store.find_session_key(trace_id) == (trace_id, "7.1", "default")
        assert row_counts(store)["spans"] == 2
        assert store.counters() == {"orphan_sessions": 1, "orphans_dropped": 2}
    else:
        assert counts == {"idle_closed": 0, "orphan_sessions": 0, "orphans_dropped": 4}
        assert store.list_sessions() == []
        assert row_counts(store)["spans"] == 0
        assert store.counters() == {"orphans_dropped": 4}
    # Settled traces are no longer held: a second sweep does nothing.
    assert pipeline.sweep(now_ns=now + 3 * MINUTE_NS) == {"idle_closed": 0, "orphan_sessions": 0,
                                                          "orphans_dropped": 0}


def test_orphan_session_gives_way_to_the_real_key(store: Store, maker: SpanMaker) -> None:
    pipeline = Pipeline(store, PipelineSettings(hold_seconds=60))
    tracer = maker.tracer()
    with (tracer.start_as_current_span("request", attributes=keyed("real", "v")),
          tracer.start_as_current_span("chat", attributes=llm(0))):
        pass
    chat, root = maker.take()
    pipeline.ingest([chat])
    pipeline.sweep(now_ns=time.time_ns() + 2 * MINUTE_NS)
    assert [s.custom_id for s in store.list_sessions()] == [chat.trace_id]
    pipeline.ingest([root])
    assert [(s.custom_id, s.turn_count) for s in store.list_sessions()] == [("real", 1)]


def test_test_cases_round_trip(store: Store, maker: SpanMaker) -> None:
    assert store.get_test_case("tc-1") is None and store.list_test_cases() == []
    cases = [TestCase(id="tc-2", input="hi", expected_output="hello", context="ctx two", metadata={"n": 2}),
             TestCase(id="tc-1", input="q", metadata={"nested": {"a": [1, 2]}, "unicode": "café ✓"})]
    assert store.put_test_cases(cases) == 2
    assert store.list_test_cases() == sorted(cases, key=lambda c: c.id)
    assert store.get_test_case("tc-1") == cases[1]
    updated = TestCase(id="tc-1", input="q2", context="ctx one")
    assert store.put_test_cases([updated]) == 1
    assert store.get_test_case("tc-1") == updated
    assert len(store.list_test_cases()) == 2
    assert store.put_test_cases([]) == 0
    # A session of a test case takes its context from the test case.
    attrs = llm(0, **keyed("eval-1", "v", **{A.TEST_CASE_ID: "tc-2"}))
    with maker.tracer().start_as_current_span("chat", attributes=attrs):
        pass
    pipeline = Pipeline(store)
    pipeline.ingest(maker.take())
    detail = pipeline.session("eval-1")
    assert detail is not None and (detail.test_case_id, detail.context, detail.is_production) == (
        "tc-2", "ctx two", False)
    [session] = store.list_sessions()
    assert session.context == "ctx two"


def test_list_sessions_filters_and_order(store: Store, maker: SpanMaker) -> None:
    tracer = maker.tracer()
    pipeline = Pipeline(store)
    for i in range(6):
        version = "v1" if i % 2 else "v2"
        with tracer.start_as_current_span("chat", attributes=llm(i, **keyed(f"s{i}", version))):
            pass
        if i in (1, 4):
            with tracer.start_as_current_span("end", attributes=keyed(f"s{i}", "v1" if i % 2 else "v2",
                                                                      **{A.SESSION_EVENT: "end"})):
                pass
    spans = maker.take()
    random.Random(5).shuffle(spans)
    pipeline.ingest(spans)
    newest_first = [s.custom_id for s in store.list_sessions()]
    assert newest_first == ["s5", "s4", "s3", "s2", "s1", "s0"]
    started = [s.started_at for s in store.list_sessions()]
    assert started == sorted(started, reverse=True)  # type: ignore[type-var]
    assert [s.custom_id for s in store.list_sessions(limit=2)] == ["s5", "s4"]
    assert [s.custom_id for s in store.list_sessions(status="completed")] == ["s4", "s1"]
    assert [s.custom_id for s in store.list_sessions(status="PENDING", version="v1")] == ["s5", "s3"]
    assert [s.custom_id for s in store.list_sessions(version="v2", limit=1)] == ["s4"]
    assert store.list_sessions(version="nope") == []
    s3 = next(s for s in store.list_sessions() if s.custom_id == "s3")
    assert (s3.version, s3.turn_count, s3.input_tokens, s3.output_tokens, s3.total_tokens, s3.cost) == (
        "v1", 1, 13, 23, 36, 0.004)
    assert s3.metadata == {} and s3.is_production


def _turn_at(tracer: Any, custom_id: str, at_ns: int, **extra: Any) -> None:
    span = tracer.start_span("chat", attributes=llm(0, **keyed(custom_id, "v1"), **extra), start_time=at_ns)
    span.end(end_time=at_ns + 10**9)


def test_the_listing_follows_a_session_whose_turns_keep_then_change_its_listing_columns(
        store: Store, maker: SpanMaker) -> None:
    """Every listing filter and order, and the idle sweep's look-up by status and activity, follow a session
    through turns that keep its status, start and user (only its activity moves), then through each change."""
    from galtea_otel.store.filters import SessionFilter

    pipeline = Pipeline(store, PipelineSettings(idle_close_minutes=30))
    tracer = maker.tracer()
    t0 = 1_780_000_000 * 10**9

    def ids(**filters: Any) -> list[str]:
        return [s.custom_id for s in store.list_sessions(filter=SessionFilter(**filters))]

    _turn_at(tracer, "a", t0)
    _turn_at(tracer, "b", t0 - 30 * MINUTE_NS)
    pipeline.ingest(maker.take())
    assert ids() == ["a", "b"] and ids(status=("PENDING",)) == ["a", "b"]
    _turn_at(tracer, "a", t0 + 40 * MINUTE_NS)  # status, start and user as stored: only the activity moves
    pipeline.ingest(maker.take())
    a = next(s for s in store.list_sessions() if s.custom_id == "a")
    assert a.turn_count == 2 and a.status == "PENDING"
    # b has been idle 80 minutes, a 9: the sweep finds b, and not a, by (status, last activity)
    assert pipeline.sweep(now_ns=t0 + 50 * MINUTE_NS)["idle_closed"] == 1
    assert ids(status=("COMPLETED",)) == ["b"] and ids(status=("PENDING",)) == ["a"]
    _turn_at(tracer, "a", t0 - 60 * MINUTE_NS)  # an earlier turn: a now started before b
    pipeline.ingest(maker.take())
    assert ids() == ["b", "a"] and ids(since_ns=t0 - 45 * MINUTE_NS) == ["b"]
    assert ids(user="u1") == []
    _turn_at(tracer, "a", t0 - 90 * MINUTE_NS, **{A.USER_ID: "u1"})  # the earliest turn names the user
    pipeline.ingest(maker.take())
    assert ids(user="u1") == ["a"] and ids(status=("PENDING",), user="u1") == ["a"]
    with tracer.start_as_current_span("end", attributes=keyed("a", "v1", **{A.SESSION_EVENT: "end"})):
        pass
    pipeline.ingest(maker.take())
    assert ids(status=("COMPLETED",)) == ["b", "a"] and ids(status=("PENDING",)) == []
    assert ids(status=("COMPLETED",), user="u1") == ["a"]


def test_find_session_key(store: Store, maker: SpanMaker) -> None:
    tracer = maker.tracer()
    with tracer.start_as_current_span("chat", attributes=llm(0, **keyed("same", "old"))):
        pass
    with tracer.start_as_current_span("chat", attributes=llm(1, **keyed("same", "new"))):
        pass
    with tracer.start_as_current_span("chat", attributes=llm(2, **keyed("other", "x"))):
        pass
    Pipeline(store).ingest(maker.take())
    assert store.find_session_key("same") == ("same", "new", "default")
    assert store.find_session_key("same", "old") == ("same", "old", "default")
    assert store.find_session_key("same", "missing") is None
    assert store.find_session_key("nobody") is None
    assert store.find_session_key("other") == ("other", "x", "default")


def test_counters(store: Store, maker: SpanMaker) -> None:
    assert store.counters() == {}
    with store.transaction() as tx:
        tx.add_counter("b", 2)
        tx.add_counter("a", 1)
        tx.add_counter("b", 5)
    assert store.counters() == {"a": 1, "b": 7}
    assert list(store.counters()) == ["a", "b"]
    # Late spans rejected by the pipeline are counted.
    pipeline = Pipeline(store, PipelineSettings(late_spans="reject"))
    tracer = maker.tracer()
    with tracer.start_as_current_span("end", attributes=keyed("closed", "v", **{A.SESSION_EVENT: "end"})):
        pass
    time.sleep(0.001)
    with tracer.start_as_current_span("chat", attributes=llm(0, **keyed("closed", "v"))):
        pass
    pipeline.ingest(maker.take())
    assert store.counters()["late_spans_rejected"] == 1
    # A transaction that fails adds nothing.
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.add_counter("a", 100)
        raise RuntimeError("abort")
    assert store.counters()["a"] == 1


def test_nul_characters_do_not_fail_a_batch(store: Store, maker: SpanMaker) -> None:
    tracer = maker.tracer()
    with tracer.start_as_current_span("chat", attributes=llm(0, **keyed("nul\x00id", "v", **{
            A.SPAN_INPUT: "a\x00b", "custom.attr": "x\x00y"}))):
        pass
    with tracer.start_as_current_span("chat", attributes=llm(1, **keyed("fine", "v"))):
        pass
    pipeline = Pipeline(store)
    result = pipeline.ingest(maker.take())
    assert (result.accepted, result.rejected) == (2, 0)
    sessions = {s.custom_id: s for s in store.list_sessions()}
    assert set(sessions) in ({"nul\x00id", "fine"}, {"nul\ufffdid", "fine"})
    key = next(k for k in sessions if k.startswith("nul"))
    detail = pipeline.session(key)
    assert detail is not None and detail.turn_count == 1
    assert detail.inference_results[0].input in ("a\x00b", "a\ufffdb")


def test_transaction_rolls_back_on_error(store: Store, maker: SpanMaker) -> None:
    with maker.tracer().start_as_current_span("chat", attributes=llm(0, **keyed("rolled", "v"))):
        pass
    spans = maker.take()
    from galtea_otel.translate.translator import translate

    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.insert_spans([translate(spans[0])])
        raise RuntimeError("abort")
    assert row_counts(store)["spans"] == 0
    assert Pipeline(store).ingest(spans).accepted == 1


# --- invalid stores -----------------------------------------------------------------------------------------

def test_sqlite_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError):
        open_store(str(path))
    assert path.read_text().startswith("these are my notes")


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="something else"):
        open_store(f"sqlite:///{path}")


def test_newer_schema_is_refused(make_store: Callable[[], Store]) -> None:
    store = make_store()
    sql = f"UPDATE galtea_meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'"
    if store.url.startswith("sqlite"):
        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        conn.execute(sql)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store._conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
            conn.execute(sql)
    store.close()
    with pytest.raises(StoreError, match="newer than this galtea-otel"):
        open_store(store.url if store.url.startswith("sqlite") else store._conninfo)  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", [
    "postgresql://galtea:s3cret-pw@127.0.0.1:1/galtea",  # nothing listens on port 1
    "postgres://galtea:s3cret-pw@no-such-host.invalid:5432/galtea",
    "postgresql://galtea@127.0.0.1:1/galtea?password=s3cret-pw",
])
def test_postgres_unreachable_is_a_store_error(url: str) -> None:
    need_module("psycopg")
    with pytest.raises(StoreError, match="cannot connect") as info:
        open_store(url)
    assert "s3cret-pw" not in str(info.value) and "***" in str(info.value)


def test_postgres_errors_and_url_never_show_the_password(pg_schemas: Callable[[], str]) -> None:
    with pytest.raises(StoreError) as info:
        open_store(_with_params(_with_password(PG_URL, "hunter2-pw"), dbname="no_such_db_here"))
    assert "hunter2-pw" not in str(info.value)
    url = _with_password(pg_schemas(), "pw-in-url")
    assert "pw-in-url" in url
    store = open_store(url)  # the local server trusts, and ignores the password
    try:
        assert "pw-in-url" not in store.url and "***" in store.url
    finally:
        store.close()


def test_postgres_foreign_tables_are_refused(pg_schemas: Callable[[], str]) -> None:
    url = pg_schemas()
    schema = url.rsplit("search_path%3D", 1)[1]
    with _pg_admin() as conn:
        conn.execute(f"CREATE TABLE {schema}.spans (id int)")
    with pytest.raises(StoreError, match="not galtea-otel's"):
        open_store(url)


def test_postgres_missing_schema_is_refused() -> None:
    _require_pg()
    with pytest.raises(StoreError, match="search_path"):
        open_store(_schema_url(f"missing_{uuid.uuid4().hex[:8]}"))


def test_postgres_concurrent_first_open(pg_schemas: Callable[[], str]) -> None:
    """Several processes' stores opening one empty schema at once: one creates it, none fails."""
    url = pg_schemas()
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    stores: list[Store] = []

    def open_one() -> None:
        barrier.wait()
        try:
            stores.append(open_store(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == [] and len(stores) == 6


# --- several receiver processes on one PostgreSQL database --------------------------------------------------

def _run_workers(
    url: str, parts: list[list[list[SpanData]]], tmp_path: Path, jitter: float = 0.0, lockstep: bool = False
) -> list[int]:
    """Run one worker process per part (a list of batches) on the store at ``url``, all started together;
    return what each accepted. ``lockstep``: the workers ingest their n-th batches together (all parts must
    have the same number of batches)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = []
    for n, batches in enumerate(parts):
        path = tmp_path / f"worker{n}.pickle"
        path.write_bytes(pickle.dumps(batches))
        procs.append(subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("pg_worker.py")), url, str(path),
             *(["--jitter", str(jitter)] if jitter else []), *(["--lockstep"] if lockstep else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
        steps = len(parts[0]) if lockstep else 0

        def tell_all(word: str) -> None:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(word + "\n")
                proc.stdin.flush()

        tell_all("go")  # start them together
        for _ in range(steps):
            tell_all("next")
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.strip() == "ok", (line, proc.stderr.read() if proc.stderr else "")
        accepted = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # not communicate(): it would miss what readline() buffered
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0 and line.startswith("done "), (line, err)
            accepted.append(int(line.split()[1]))
        return accepted
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(("workers", "jitter"), [(2, 0.0), (2, 0.002), (4, 0.002)])
def test_receivers_sharing_postgres_give_the_records_of_one(
    pg_schemas: Callable[[], str], maker: SpanMaker, tmp_path: Path, workers: int, jitter: float
) -> None:
    """Two (or four) receiver processes, each with its own pipeline, on one database; the spans of the same
    50 sessions split between them at random and ingested concurrently in small batches. With ``jitter`` the
    workers pause inside their transactions, so that they overlap far more often: without the store's locks
    this case fails."""
    spans = conversations(maker, 50, seed=11 + workers)
    assert 400 <= len(spans) <= 700
    # The reference: one pipeline, all spans at once, in SQLite and in PostgreSQL.
    references = [open_store(f"sqlite:///{tmp_path / 'reference.db'}"), open_store(pg_schemas())]
    try:
        for reference in references:
            Pipeline(reference).ingest(spans)
        expected = snapshot(references[0])
        assert len(expected["sessions"]) == 50
        assert snapshot(references[1]) == expected
        expected_counts = row_counts(references[0])
    finally:
        for reference in references:
            reference.close()

    rng = random.Random(workers)
    shuffled = list(spans)
    rng.shuffle(shuffled)
    parts: list[list[SpanData]] = [[] for _ in range(workers)]
    for span in shuffled:
        parts[rng.randrange(workers)].append(span)
    # A few spans are delivered twice, to different receivers (a collector retry).
    for span in rng.sample(spans, 20):
        parts[rng.randrange(workers)].append(span)
    for part in parts:
        rng.shuffle(part)
    url = pg_schemas()
    accepted = _run_workers(url, [split_batches(p, rng, 1, 6) for p in parts], tmp_path, jitter)
    assert sum(accepted) == len(spans)

    shared = open_store(url)
    try:
        assert snapshot(shared) == expected
        assert row_counts(shared) == expected_counts
    finally:
        shared.close()


def test_receivers_writing_the_same_sessions_lose_no_update(
    pg_schemas: Callable[[], str], maker: SpanMaker, tmp_path: Path
) -> None:
    """Four receivers write the four turns of each of 60 sessions at the same moment (receiver w gets turn w
    of every session, one span per request, in lockstep). A session's last write decides its summary, so a
    lost update (a summary computed without a concurrent writer's rows) shows as a turn count below 4."""
    tracer = maker.tracer()
    turns: list[list[list[SpanData]]] = [[] for _ in range(4)]
    for i in range(60):
        for turn in range(4):
            with tracer.start_as_current_span("chat", attributes=llm(turn, **keyed(f"hot-{i:02d}", "v"))):
                pass
            turns[turn].append(maker.take())
    url = pg_schemas()
    assert sum(_run_workers(url, turns, tmp_path, jitter=0.002, lockstep=True)) == 240
    shared = open_store(url)
    try:
        sessions = shared.list_sessions(limit=100)
        assert len(sessions) == 60
        assert [s.custom_id for s in sessions if s.turn_count != 4] == []
        assert {s.input_tokens for s in sessions} == {10 + 11 + 12 + 13}
    finally:
        shared.close()


def test_postgres_deadlock_is_a_retryable_store_error(pg_schemas: Callable[[], str]) -> None:
    """Locks taken out of order (the pipeline never does) deadlock; the store says so with a retryable error
    and the other transaction commits."""
    from galtea_otel.store.postgres import RetryableStoreError

    store = open_store(pg_schemas())
    barrier = threading.Barrier(2)
    outcomes: dict[str, BaseException | None] = {}

    def run(name: str, first: str, second: str) -> None:
        try:
            with store.transaction() as tx:
                tx.lock_traces([first])
                tx.add_counter(name, 1)
                tx.held_traces(0)  # a query that returns rows: the lock is taken by now, even if pipelined
                barrier.wait()
                tx.lock_traces([second])
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=("one", "a" * 32, "b" * 32)),
               threading.Thread(target=run, args=("two", "b" * 32, "a" * 32))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = [e for e in outcomes.values() if e is not None]
        assert len(errors) == 1 and isinstance(errors[0], RetryableStoreError), outcomes
        assert "deadlock" in str(errors[0])
        assert sum(store.counters().values()) == 1  # the failed one rolled back
        with pytest.raises(StoreError):  # a closed store refuses, and not as a transient error
            store.close()
            with store.transaction():
                pass
    finally:
        store.close()


def test_postgres_store_survives_lost_connections(pg_schemas: Callable[[], str], maker: SpanMaker) -> None:
    """The server ends every connection of the store (a restart, a failover): the next transactions get new
    connections and succeed."""
    name = f"galtea_test_{uuid.uuid4().hex[:8]}"
    store = open_store(_with_params(pg_schemas(), application_name=name))
    try:
        pipeline = Pipeline(store)
        with maker.tracer().start_as_current_span("chat", attributes=llm(0, **keyed("survivor", "v"))):
            pass
        with maker.tracer().start_as_current_span("chat", attributes=llm(1, **keyed("survivor", "v"))):
            pass
        first, second = maker.take()
        pipeline.ingest([first])
        with _pg_admin() as conn:
            killed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                  " WHERE application_name = %s", (name,)).fetchone()[0]
        assert killed >= 1
        assert pipeline.ingest([second]).accepted == 1
        [session] = store.list_sessions()
        assert session.turn_count == 2
    finally:
        store.close()


def _sql(store: Store, statements: Sequence[str]) -> None:
    if store.url.startswith("sqlite"):
        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store._conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
            for statement in statements:
                conn.execute(statement)


def upgrade_case(make_store: Callable[[], Store]) -> tuple[Store, Store, list[SpanData]]:
    """For a migration test: (a reference store holding a session's 3 turns and a 4th in another trace, a store
    holding the 3 only, the 4th's spans): the second store is taken back to an older schema by the test, opened
    again, then given the 4th turn; its records must end as the reference's."""
    from galtea_otel.pipeline import Pipeline

    from ..pipeline.spans import collect, conversation, sdk_tracer

    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "old", "1", 3)
        old = collect(exporter)
        exporter.clear()
        conversation(tracer, "old", "1", 1)  # another trace of the same session, after the upgrade
        later = collect(exporter)
    reference = make_store()
    Pipeline(reference).ingest(old + later)
    store = make_store()
    Pipeline(store).ingest(old)
    return reference, store, later


def test_a_schema_v5_store_materializes_its_turns_on_first_touch(make_store: Callable[[], Store]) -> None:
    """Schema v6 (incremental assembly): a v5 store, with no turns table and no ``agg``, opens and migrates in
    place; its sessions read as before (assembled from their rows) until a batch touches them, which rebuilds
    them whole into stored turns; the records are those of a store that had v6 from the start."""
    from galtea_otel.pipeline import Pipeline, read_session
    from galtea_otel.store import turns as turns_sql
    from galtea_otel.store.rows import ADDED_COLUMNS

    reference, store, later = upgrade_case(make_store)
    before = read_session(store, ("old", "1"))
    added = [c for t, c, _ in ADDED_COLUMNS]
    assert {"agg", "root_id", "flags"} <= set(added)  # v6's, taken away below
    _sql(store, [
        *(f"DROP INDEX {s.split()[5]}" for s in turns_sql.PARTIAL_INDEXES),
        *(f"DROP INDEX {name}" for name, _, _ in turns_sql.SPAN_INDEXES),
        "DROP TABLE turns", "ALTER TABLE sessions DROP COLUMN agg", "ALTER TABLE spans DROP COLUMN root_id",
        "ALTER TABLE spans DROP COLUMN flags", "UPDATE galtea_meta SET value = '5' WHERE key = 'schema_version'"])
    url = store.url if store.url.startswith("sqlite") else store._conninfo  # type: ignore[attr-defined]
    store.close()
    migrated = open_store(url)
    try:
        assert migrated.read_session_summary(("old", "1"))["agg"] is None  # type: ignore[index]
        assert read_session(migrated, ("old", "1")) == before  # read by reassembling, as in v5
        Pipeline(migrated).ingest(later)
        assert migrated.read_session_summary(("old", "1"))["agg"] is not None  # type: ignore[index]
        assert len(migrated.read_turns(("old", "1"))) == 4
        got, want = read_session(migrated, ("old", "1")), read_session(reference, ("old", "1"))
        assert got is not None and want is not None and got.turn_count == 4
        assert got.model_dump() == want.model_dump()
    finally:
        migrated.close()
