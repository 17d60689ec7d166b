"""The session filter language and keyset paging, in both stores (SQLite and PostgreSQL), through the pipeline.

Spans come from the real OpenTelemetry SDK (the store tests' ``SpanMaker``); sessions are listed with
``Store.list_sessions(filter=..., after=...)`` and checked against the same question answered in Python over the
full records.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import Status, StatusCode

from galtea_otel import attributes as A
from galtea_otel.pipeline import Pipeline
from galtea_otel.records import Session
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import Store, open_store
from galtea_otel.store.filters import (
    SQLITE,
    Cursor,
    FilterError,
    SessionFilter,
    make_filter,
    page_query,
    parse_query,
)
from galtea_otel.store.rows import ADDED_INDEXES, SESSION_COLUMNS
from tests.store.test_stores import SpanMaker, keyed, llm

BASE_NS = 1_780_000_000 * 10**9
MINUTE_NS = 60 * 10**9


def _fill(store: Store, maker: SpanMaker, n: int = 30) -> Pipeline:
    """``n`` sessions; pairs of them start at the same nanosecond (ties the cursor must order by custom id)."""
    pipeline = Pipeline(store, PipelineSettings(idle_close_minutes=30))
    tracer = maker.tracer()
    for i in range(n):
        start = BASE_NS + (i // 2) * MINUTE_NS
        custom_id = f"s{i:02d}"
        version = "v2" if i % 3 == 0 else "v1"
        metadata = json.dumps({"channel": "chat" if i % 2 else "email", "tier": i % 3})
        marker = tracer.start_span("start", attributes=keyed(custom_id, version, **{
            A.SESSION_EVENT: "start", A.SESSION_METADATA: metadata}), start_time=start)
        marker.end(end_time=start)
        attrs = {**llm(i, **keyed(custom_id, version)), "user.id": f"u{i % 4}",
                 A.GEN_AI_REQUEST_MODEL: "big-model" if i % 5 == 0 else "small-model",
                 A.SPAN_INPUT: f"question {i}" + (" about refunds" if i % 7 == 0 else "")}
        span = tracer.start_span("chat", attributes=attrs, start_time=start)
        if i % 6 == 0:
            span.set_status(Status(StatusCode.ERROR, "model error"))
        span.end(end_time=start + 10**9)
        if i % 5 == 2:  # a second turn
            again = tracer.start_span("chat", attributes=llm(100 + i, **keyed(custom_id, version)),
                                      start_time=start + 10**9 + 1000)
            again.end(end_time=start + 10**9 + 2000)
        if i % 4 == 1:
            end = tracer.start_span("end", attributes=keyed(custom_id, "v2" if i % 3 == 0 else "v1",
                                                            **{A.SESSION_EVENT: "end"}), start_time=start + 2 * 10**9)
            end.end(end_time=start + 2 * 10**9)
    pipeline.ingest(maker.take())
    return pipeline


def _all_pages(store: Store, flt: SessionFilter, limit: int) -> tuple[list[Session], int]:
    found: list[Session] = []
    after = None
    pages = 0
    while True:
        page = store.list_sessions(filter=flt, after=after, limit=limit)
        pages += 1
        found.extend(page)
        assert len(page) <= limit
        after = page.next
        if after is None:
            return found, pages
        assert pages < 1000


def test_keyset_pages_cover_every_session_once_in_order(store: Store, maker: SpanMaker) -> None:
    _fill(store, maker)
    everything = store.list_sessions(limit=-1)
    assert len(everything) == 30
    keys = [(s.started_at, s.custom_id, s.version) for s in everything]
    assert keys == sorted(keys, key=lambda k: (-k[0].timestamp(), k[1], k[2]))  # type: ignore[union-attr]
    for limit in (1, 4, 7, 30, 31):
        pages, count = _all_pages(store, SessionFilter(), limit)
        assert [s.custom_id for s in pages] == [s.custom_id for s in everything], limit
        assert count == -(-30 // limit)  # no empty last page: a page knows when nothing is older


@pytest.mark.parametrize("query", [
    {"status": ["COMPLETED"]}, {"status": ["pending,failed"]}, {"version": ["v2"]}, {"user": ["u1"]},
    {"model": ["big-model"]}, {"metadata.channel": ["email"]}, {"metadata.tier": ["2"]},
    {"has_error": ["true"]}, {"has_error": ["false"]}, {"min_cost": ["0.01"], "max_cost": ["0.02"]},
    {"min_turns": ["1"], "max_turns": ["1"]}, {"q": ["REFUNDS"]}, {"q": ["question 1"]},
    {"production": ["true"]}, {"since": ["2026-05-28T20:33:00Z"]}, {"until": ["2026-05-28T20:38:00Z"]},
    {"user": ["u2"], "q": ["question"], "metadata.channel": ["email"]},
])
def test_every_filter_keeps_what_it_says_on_every_page(store: Store, maker: SpanMaker,
                                                       query: dict[str, list[str]]) -> None:
    _fill(store, maker)
    flt = parse_query(query)
    everything = list(store.list_sessions(limit=-1))
    expected = [s.custom_id for s in everything if _keeps(flt, s, store)]
    assert expected, f"{query} keeps nothing: a useless case"
    assert len(expected) < len(everything) or query.get("production"), f"{query} keeps everything"
    for limit in (3, 50):
        found, _ = _all_pages(store, flt, limit)
        assert [s.custom_id for s in found] == expected, (query, limit)


def _keeps(flt: SessionFilter, s: Session, store: Store) -> bool:
    """The filter's meaning, over the full records (slow, obvious)."""
    from galtea_otel.pipeline import read_session

    detail = read_session(store, (s.custom_id, s.version))
    assert detail is not None
    started_ns = round(s.started_at.timestamp()) * 10**9 if s.started_at else 0
    checks = [
        not flt.status or s.status in flt.status,
        flt.version is None or s.version == flt.version,
        flt.user is None or s.user_id == flt.user,
        flt.model is None or any(t.model == flt.model for t in detail.inference_results),
        all(str(s.metadata.get(k)) == v for k, v in flt.metadata),
        flt.has_error is None or flt.has_error == (s.error is not None or any(
            t.status == "FAILED" for t in detail.inference_results)),
        flt.min_cost is None or (s.cost is not None and s.cost >= flt.min_cost),
        flt.max_cost is None or (s.cost is not None and s.cost <= flt.max_cost),
        flt.min_turns is None or s.turn_count >= flt.min_turns,
        flt.max_turns is None or s.turn_count <= flt.max_turns,
        flt.production is None or s.is_production == flt.production,
        not flt.q or any(flt.q.lower() in (t.input or "").lower() or flt.q.lower() in (t.output or "").lower()
                         for t in detail.inference_results),
        flt.since_ns is None or started_ns >= flt.since_ns,
        flt.until_ns is None or started_ns < flt.until_ns,
    ]
    return all(checks)


def test_idle_closed_and_reopened_are_derived_from_the_lifecycle(store: Store, maker: SpanMaker) -> None:
    pipeline = Pipeline(store, PipelineSettings(idle_close_minutes=30))
    tracer = maker.tracer()
    for custom_id in ("idle", "reopened", "open"):
        with tracer.start_as_current_span("chat", attributes=llm(0, **keyed(custom_id, "v"))):
            pass
    pipeline.ingest(maker.take())
    import time

    later = time.time_ns() + 31 * MINUTE_NS
    assert pipeline.sweep(now_ns=later)["idle_closed"] == 3
    for custom_id in ("reopened", "open"):  # activity after the close: reopens
        span = tracer.start_span("chat", attributes=llm(1, **keyed(custom_id, "v")), start_time=later + MINUTE_NS)
        span.end(end_time=later + 2 * MINUTE_NS)
    end = tracer.start_span("end", attributes=keyed("open", "v", **{A.SESSION_EVENT: "end"}),
                            start_time=later + 3 * MINUTE_NS)  # reopened, then ended again
    end.end(end_time=later + 3 * MINUTE_NS)
    pipeline.ingest(maker.take())
    page = store.list_sessions()
    status = {s.custom_id: s.status for s in page}
    assert status == {"idle": "COMPLETED", "reopened": "PENDING", "open": "COMPLETED"}
    assert page.lifecycle == {("idle", "v"): "idle-closed", ("reopened", "v"): "reopened"}
    ids = lambda text: sorted(s.custom_id for s in store.list_sessions(filter=make_filter(status=text)))  # noqa: E731
    assert ids("idle-closed") == ["idle"]
    assert ids("REOPENED") == ["reopened"]
    assert ids("idle-closed,reopened") == ["idle", "reopened"]
    assert ids("completed") == ["idle", "open"]
    assert ids("pending") == ["reopened"]


def test_a_scanning_filter_reads_a_bounded_window_and_says_where_to_go_on(store: Store, maker: SpanMaker) -> None:
    _fill(store, maker)
    flt = make_filter(q="refunds")  # s00, s07, s14, s21, s28
    if "sqlite" in store.url:
        import galtea_otel.store.filters as filters

        window = 4
        conn = store._connect()  # type: ignore[attr-defined]
        found: list[str] = []
        searched = []
        after = None
        from galtea_otel.store.rows import session_from_row

        while True:
            query = filters.page_query(SESSION_COLUMNS, flt, after, 10, SQLITE, window=window)
            page = filters.run_page(query, 10, lambda sql, args: conn.execute(sql, args).fetchall(),
                                    session_from_row, window=window)
            found.extend(s.custom_id for s in page)
            searched.append(page.searched)
            after = page.next
            if after is None:
                break
        assert sorted(found) == ["s00", "s07", "s14", "s21", "s28"]
        assert searched[:-1] == [4] * (len(searched) - 1) and len(searched) == 8  # 30 sessions, 4 at a time
    page = store.list_sessions(filter=flt, limit=2)
    assert len(page) == 2 and page.next is not None and page.searched is None  # a full page: go on by cursor
    rest = store.list_sessions(filter=flt, limit=10, after=page.next)
    assert len(rest) == 3 and rest.next is None and rest.searched == 20  # the 20 older than s21


def test_the_listing_reads_an_index_range_not_the_table(tmp_path: Path, maker: SpanMaker) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    store = open_store(url)
    try:
        _fill(store, maker, 6)
        conn = store._connect()  # type: ignore[attr-defined]
        conn.execute("ANALYZE")
        after = Cursor(BASE_NS + MINUTE_NS, "s02", "v1")
        for flt, index in ((SessionFilter(), "sessions_by_start_key"),
                           (make_filter(status="FAILED"), "sessions_by_status_start"),
                           (make_filter(user="u1"), "sessions_by_user_start"),
                           (make_filter(version="v2"), "sessions_by_version_start")):
            query = page_query(SESSION_COLUMNS, flt, after, 50, SQLITE)
            plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + query.rows, query.rows_args))
            outer = plan.split("CORRELATED")[0]
            assert f"USING INDEX {index}" in outer, (flt, plan)
            assert "TEMP B-TREE" not in outer, plan  # no sort: the index gives the order
    finally:
        store.close()


def test_an_older_store_gets_the_listing_indexes_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    for name, _, _ in ADDED_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("UPDATE galtea_meta SET value = '4' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        names = {r[0] for r in store._connect().execute(  # type: ignore[attr-defined]
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {name for name, _, _ in ADDED_INDEXES} <= names
        assert store.list_sessions(filter=make_filter(user="x")) == []
    finally:
        store.close()


@pytest.mark.parametrize(("query", "message"), [
    ({"status": ["asleep"]}, "unknown status"), ({"min_cost": ["-1"]}, ">= 0"), ({"min_turns": ["1.5"]}, "whole"),
    ({"since": ["soon"]}, "ISO 8601"), ({"nope": ["1"]}, "unknown filter"), ({"metadata.": ["1"]}, "metadata key"),
    ({"has_error": ["maybe"]}, "true or false"), ({"min_cost": ["2"], "max_cost": ["1"]}, "lower bound"),
    ({"q": ["x" * 501]}, "longer than 500"), ({"user": ["a", "b"]}, "given 2 times"),
])
def test_a_malformed_filter_is_a_clear_error(query: dict[str, list[str]], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_query(query)


def test_a_filter_round_trips_through_its_url() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    query = {"status": ["failed,idle-closed"], "user": ["u 1"], "metadata.k.x": ["v=1"], "since": ["2h"],
             "min_cost": ["0.5"], "max_turns": ["3"], "q": ["héllo"], "production": ["no"]}
    flt = parse_query(query, now=now)
    assert flt.status == ("FAILED", "IDLE_CLOSED") and flt.metadata == (("k.x", "v=1"),)
    assert flt.since_ns == int(now.timestamp() - 7200) * 10**9
    again = parse_query({k: [v] for k, v in flt.query()}, now=now)
    assert again == flt
    cursor = Cursor(123, "id/ü", "v 1")
    assert Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "!!", "WzEsMl0"):  # not base64 / not a 3-list
        with pytest.raises(FilterError):
            Cursor.decode(bad)



def test_postgres_text_search_reads_its_trigram_indexes_and_finds_what_the_plain_query_finds(
        pg_schemas: Any, maker: SpanMaker) -> None:
    """A new PostgreSQL store creates the pg_trgm indexes (postgres.TRIGRAM_INDEXES) and its ``q`` search reads
    them; with them dropped (a server that refused the extension), the plain query finds the same sessions."""
    import psycopg

    from galtea_otel.store.filters import POSTGRES_TRIGRAM
    from galtea_otel.store.postgres import TRIGRAM_INDEXES, PostgresStore

    url = pg_schemas()
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    _fill(store, maker)
    conninfo = store._conninfo
    with psycopg.connect(conninfo, autocommit=True) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
        assert {n for n, _ in TRIGRAM_INDEXES} <= names
        query = page_query(SESSION_COLUMNS, make_filter(q="refunds"), None, 50, POSTGRES_TRIGRAM)
        conn.execute("SET enable_seqscan = off")  # 30 sessions: the planner would read the table otherwise
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query.rows.replace("?", "%s"), query.rows_args))
    assert "spans_input_trgm" in plan and "spans_output_trgm" in plan, plan
    searches = ("REFUNDS", "question 1", "ue", "no such text", "100%_")

    def found(s: Store) -> dict[str, list[str]]:
        return {q: [x.custom_id for x in _all_pages(s, make_filter(q=q), 7)[0]] for q in searches}

    with_index = found(store)
    assert with_index["REFUNDS"] and with_index["ue"] and not with_index["no such text"]
    store.close()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, _ in TRIGRAM_INDEXES:
            conn.execute(f"DROP INDEX {name}")
    plain = open_store(url)
    try:
        assert not plain._dialect.text_index  # type: ignore[attr-defined]
        assert found(plain) == with_index
    finally:
        plain.close()


def test_postgres_without_the_right_to_create_pg_trgm_searches_with_the_plain_query(
        pg_schemas: Any, maker: SpanMaker, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A role that may not CREATE EXTENSION (no CREATE on a database that lacks pg_trgm): the store opens, says
    so once in the log, and its ``q`` search still finds what it should (the plain query)."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    from galtea_otel.store import postgres
    from tests.store.test_stores import PG_URL, _pg_admin

    monkeypatch.setattr(postgres, "_trigram_refused_logged", False)  # logged once per process: this test's time
    pg_schemas()  # skips when PostgreSQL is not reachable
    name = f"galtea_notrgm_{uuid.uuid4().hex[:10]}"
    with _pg_admin() as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN")
        admin.execute(f"CREATE DATABASE {name} OWNER postgres TEMPLATE template0")  # surely without pg_trgm
        admin.execute(f"REVOKE CREATE ON DATABASE {name} FROM PUBLIC")
    try:
        with psycopg.connect(urlunsplit(urlsplit(PG_URL)._replace(path=f"/{name}")), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA app AUTHORIZATION {name}")
        parts = urlsplit(PG_URL)
        url = urlunsplit(parts._replace(netloc=f"{name}@{parts.hostname}:{parts.port or 5432}", path=f"/{name}",
                                        query="options=-csearch_path%3Dapp"))
        with caplog.at_level("WARNING", logger="galtea_otel.store"):
            store = open_store(url)
        try:
            assert not store._dialect.text_index  # type: ignore[attr-defined]
            assert any("no pg_trgm index for the text search" in r.getMessage() for r in caplog.records)
            _fill(store, maker)
            found = [s.custom_id for s in _all_pages(store, make_filter(q="refunds"), 7)[0]]
            assert found and all(int(c[1:]) % 7 == 0 for c in found)
        finally:
            store.close()
    finally:
        with _pg_admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {name}")
