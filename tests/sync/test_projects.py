"""Projects (issue 12, point 2) in the store and the sync: stores of schema v5 migrate in place to the project
keys (SQLite: the tables rebuilt in the opening transaction; PostgreSQL: their primary keys swapped), keeping
every row as the default project's; two projects' sessions of the same custom id and version are two sessions,
each synced to its own Galtea product."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.store import Store, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from galtea_otel.store.rows import REKEYED
from galtea_otel.sync.config import VersionMapping
from galtea_otel.sync.outbox import open_outbox
from galtea_otel.sync.worker import sync_once
from tests.fakes.galtea_api import FakeGaltea
from tests.pipeline.spans import collect, conversation, sdk_tracer
from tests.sync.conftest import PRODUCT, sync_config

V5_SQLITE = (Path(__file__).resolve().parents[1] / "store" / "schema_v5_sqlite.sql").read_text()
NOW = 1_700_000_000_000_000_000


def _ingest(pipeline: Pipeline, custom_id: str, version: str, turns: int, project: str = "default") -> None:
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, custom_id, version, turns)
        pipeline.ingest(collect(exporter), project)


def _v5_rows(execute: Callable[[str], object]) -> None:
    """A v5 store's content, by hand: a session with one LLM turn, its outbox row and sync state, an evaluation
    and an evaluation queue row."""
    execute("INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status,"
            " own_custom_id, own_version, custom_id, version, input, output, abandoned, received_ns, key_weak)"
            f" VALUES ('{'a' * 32}', '{'b' * 16}', NULL, 'chat', 'GENERATION', {NOW}, {NOW + 10**9}, 0, 'old', '1',"
            f" 'old', '1', 'hello', 'hi there', FALSE, {NOW}, FALSE)")
    execute("INSERT INTO sessions (custom_id, version, status, metadata, started_ns, ended_ns, last_activity_ns,"
            " turn_count, assembly, updated_ns)"
            f" VALUES ('old', '1', 'PENDING', '{{}}', {NOW}, NULL, {NOW}, 1, '{{}}', {NOW})")
    execute("INSERT INTO galtea_outbox (custom_id, version, seq, state, attempts, next_attempt_ns, enqueued_ns)"
            f" VALUES ('old', '1', 3, 'pending', 0, 0, {NOW})")
    execute("INSERT INTO galtea_sync_sessions (custom_id, version, platform_id, updated_ns)"
            f" VALUES ('old', '1', 'sess_1', {NOW})")
    execute("INSERT INTO galtea_sync_turns (custom_id, version, turn_id, platform_id, spans_sent)"
            f" VALUES ('old', '1', '{'b' * 16}', 'inf_1', '[]')")
    execute("INSERT INTO galtea_sync_intents (custom_id, version, turn_id, body) VALUES ('old', '1', 't2', '{}')")
    execute("INSERT INTO evaluations (id, custom_id, version, name, score, source, created_ns, superseded)"
            f" VALUES ('ev1', 'old', '1', 'helpfulness', 0.5, 'human', {NOW}, 0)")
    execute("INSERT INTO evaluation_queue (custom_id, version, end_ns, state, attempts, next_attempt_ns,"
            f" enqueued_ns) VALUES ('old', '1', {NOW}, 'pending', 0, 0, {NOW})")


def _check_migrated(store: Store) -> None:
    """Every v5 row is the default project's; the keys now hold the project; a second project's session of the
    same custom id and version is its own."""
    [old] = store.list_sessions()
    assert (old.custom_id, old.version, old.project) == ("old", "1", "default")
    detail = read_session(store, ("old", "1", "default"))
    assert detail is not None and [t.input for t in detail.inference_results] == ["hello"]
    assert [e.name for e in detail.evaluations] == ["helpfulness"]
    state = open_outbox(store).state(("old", "1", "default"))
    assert state is not None and state.platform_id == "sess_1" and set(state.turns) == {"b" * 16}
    assert set(state.intents) == {"t2"}
    [item] = open_outbox(store).claim(time.time_ns(), 10, 10**9)
    assert (item.key, item.seq) == (("old", "1", "default"), 3)

    pipeline = Pipeline(store)
    _ingest(pipeline, "old", "1", 2, project="other")
    sessions = {s.project: s for s in store.list_sessions(limit=-1)}
    assert set(sessions) == {"default", "other"}
    assert sessions["default"].turn_count == 1 and sessions["other"].turn_count == 2


def test_a_v5_sqlite_store_is_rebuilt_in_place_with_project_keys(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    conn.executescript(V5_SQLITE)
    conn.execute("INSERT INTO galtea_meta (key, value) VALUES ('schema_version', '5')")
    _v5_rows(conn.execute)
    conn.commit()
    conn.close()

    store = open_store(f"sqlite:///{path}")
    try:
        _check_migrated(store)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        for table, key in REKEYED:
            primary = [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({table})"), key=lambda r: r[5])
                       if r[5]]
            assert primary == [c.strip() for c in key.split(",")], table
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not any(t.endswith("__pre7") for t in tables)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"sessions_by_start_key", "galtea_outbox_due", "evaluation_queue_due",
                "sessions_by_project_start"} <= indexes
    finally:
        conn.close()
    store = open_store(f"sqlite:///{path}")  # opening again changes nothing
    try:
        assert len(store.list_sessions(limit=-1)) == 2
    finally:
        store.close()


def test_a_failed_sqlite_migration_leaves_the_v5_store_as_it_was(tmp_path: Path) -> None:
    """The rebuild runs in the opening transaction: when it fails, the store is still a whole v5 store."""
    from galtea_otel.store.base import StoreError

    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path)
    conn.executescript(V5_SQLITE)
    conn.execute("INSERT INTO galtea_meta (key, value) VALUES ('schema_version', '5')")
    _v5_rows(conn.execute)
    # A view with the name the rebuild sets the outbox aside under makes the migration fail half-way (after the
    # sessions table was already set aside).
    conn.execute("CREATE VIEW galtea_outbox__pre7 AS SELECT 1")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone() == ("5",)
        assert conn.execute("SELECT custom_id, version FROM sessions").fetchall() == [("old", "1")]
        assert "project" not in {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
        assert conn.execute("SELECT seq FROM galtea_outbox").fetchall() == [(3,)]
    finally:
        conn.close()


def test_a_v5_postgres_store_is_rekeyed_in_place(pg_url: Callable[[], str]) -> None:
    import psycopg

    url = pg_url()
    store = open_store(url)  # a new store, then taken back to schema v5 by hand
    conninfo = store._conninfo  # type: ignore[attr-defined]
    store.close()
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute("DELETE FROM galtea_meta")
        conn.execute("DROP INDEX sessions_by_project_start")
        for table, key in REKEYED:
            old_key = ", ".join(c.strip() for c in key.split(",") if c.strip() != "project")
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN project")
            conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({old_key})")
        conn.execute("ALTER TABLE spans DROP COLUMN project")
        conn.execute("ALTER TABLE evaluations DROP COLUMN project")
        conn.execute("INSERT INTO galtea_meta (key, value) VALUES ('schema_version', '5')")
        _v5_rows(conn.execute)

    store = open_store(url)
    try:
        _check_migrated(store)
    finally:
        store.close()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)
        for table, key in REKEYED:
            row = conn.execute(
                "SELECT array_agg(a.attname::text ORDER BY array_position(c.conkey, a.attnum)) FROM pg_constraint c"
                " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
                " WHERE c.conrelid = to_regclass(%s) AND c.contype = 'p'", (table,)).fetchone()
            assert row is not None and row[0] == [c.strip() for c in key.split(",")], table
    store = open_store(url)  # again: nothing to do
    try:
        assert len(store.list_sessions(limit=-1)) == 2
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return str(request.getfixturevalue("pg_url")())


def test_each_project_syncs_to_its_own_product(fake: tuple[FakeGaltea, str], store_url: str) -> None:
    api, url = fake
    api.add_version(PRODUCT, "1.0")
    api.add_version("prod_shop", "1.0")
    store = open_store(store_url)
    try:
        pipeline = Pipeline(store, sync=True)
        _ingest(pipeline, "shared", "1.0", 1)
        _ingest(pipeline, "shared", "1.0", 2, project="shop")
        _ingest(pipeline, "shared", "1.0", 1, project="unmapped")
        config = sync_config(url, versions=VersionMapping(product_id=PRODUCT, project_products={"shop": "prod_shop"}))
        summary = sync_once(store, config)
        assert summary.refusals and "project 'unmapped' has no Galtea product" in summary.refusals[0]
        by_product: dict[str, list[int]] = {}
        for session in api.sessions.values():
            product = api.versions[session["versionId"]]["productId"]
            turns = [t for t in api.turns.values() if t["sessionId"] == session["id"]]
            by_product.setdefault(product, []).append(len(turns))
        assert by_product == {PRODUCT: [1], "prod_shop": [2]}
        overview = open_outbox(store).overview()
        assert [p.key for p in overview.parked_items] == [("shared", "1.0", "unmapped")]
    finally:
        store.close()


def test_the_project_products_map_comes_from_the_environment() -> None:
    from galtea_otel.sync.config import GalteaSyncConfig, SyncConfigError

    config = GalteaSyncConfig.from_env(environ={"GALTEA_API_KEY": "k", "GALTEA_PROJECT_PRODUCTS":
                                                json.dumps({"shop": "prod_shop"})})
    assert config.versions.project_products == {"shop": "prod_shop"}
    with pytest.raises(SyncConfigError, match="the project products map is not JSON"):
        GalteaSyncConfig.from_env(environ={"GALTEA_API_KEY": "k", "GALTEA_PROJECT_PRODUCTS": "{"})
