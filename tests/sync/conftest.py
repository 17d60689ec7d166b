"""Fixtures of the sync tests: the Galtea stand-in on 127.0.0.1, stores holding the demo's sessions (SQLite, and
PostgreSQL when reachable: ``GALTEA_OTEL_TEST_POSTGRES``), and a check that the platform holds every record once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from galtea_otel.pipeline import read_session
from galtea_otel.store import Store, open_store
from galtea_otel.sync.config import GalteaSyncConfig, VersionMapping
from galtea_otel.sync.evaluations import all_evaluations, unsendable
from galtea_otel.sync.payloads import flatten, platform_span_id
from tests.fakes.galtea_api import FakeGaltea, running
from tests.needs import unavailable

API_KEY = "gsk_live_5ecret-key-never-logged-0123456789"
PRODUCT = "prod_support"
DEMO_VERSION = "demo-1.0.0"
PG_URL = os.environ.get("GALTEA_OTEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
GALTEA_OTEL = [sys.executable, "-m", "galtea_otel.cli.main"]


@pytest.fixture
def fake() -> Iterator[tuple[FakeGaltea, str]]:
    api = FakeGaltea(api_key=API_KEY)
    api.add_version(PRODUCT, DEMO_VERSION)
    with running(api) as (served, url):
        yield served, url


def sync_config(url: str, **options: Any) -> GalteaSyncConfig:
    options.setdefault("versions", VersionMapping(product_id=PRODUCT))
    options.setdefault("timeout_s", 0.5)
    options.setdefault("backoff_base_s", 0.05)
    options.setdefault("backoff_max_s", 0.5)
    options.setdefault("lease_s", 5.0)
    return GalteaSyncConfig(api_key=API_KEY, base_url=url, **options)


def run_demo_into(url: str) -> None:
    env = {**os.environ, "GALTEA_OTEL_STORE": url}
    done = subprocess.run([*GALTEA_OTEL, "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    run_demo_into(f"sqlite:///{path}")
    return path


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}"


@pytest.fixture
def pg_url() -> Iterator[Callable[[], str]]:
    error = _pg_reachable()
    if error:
        unavailable(error)
    import psycopg

    made: list[str] = []

    def make() -> str:
        schema = f"galtea_sync_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        made.append(schema)
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}', safe='')}"

    yield make
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for schema in made:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
def pg_demo_template() -> Iterator[str]:
    """A PostgreSQL schema the demo ran into once (dropped at the end): each test copies it, as SQLite copies
    ``demo_template`` (running the demo costs a process and ~1.5 s a test)."""
    error = _pg_reachable()
    if error:
        unavailable(error)
    import psycopg

    schema = f"galtea_sync_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_URL else "?"
        run_demo_into(f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}', safe='')}")
        yield schema
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def copy_pg_schema(source: str, target_url: str) -> None:
    """Every table of ``source`` (columns, defaults, constraints, indexes, rows) into the schema of ``target_url``
    (the store has no sequences, foreign keys, views or triggers)."""
    import psycopg

    with psycopg.connect(target_url, autocommit=True) as conn:
        target = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (source,))]
        assert tables, f"schema {source} holds no tables"
        with conn.transaction():
            for table in tables:
                conn.execute(f'CREATE TABLE {target}."{table}" (LIKE {source}."{table}" INCLUDING ALL)')
                conn.execute(f'INSERT INTO {target}."{table}" SELECT * FROM {source}."{table}"')


@pytest.fixture(params=["sqlite", "postgresql"])
def demo_store_url(request: pytest.FixtureRequest, tmp_path: Path, demo_template: Path) -> str:
    """A store URL holding the demo's four sessions, never synced."""
    if request.param == "sqlite":
        path = tmp_path / "sessions.db"
        shutil.copy(demo_template, path)
        return f"sqlite:///{path}"
    url = str(request.getfixturevalue("pg_url")())
    copy_pg_schema(request.getfixturevalue("pg_demo_template"), url)
    return url


@pytest.fixture
def demo_store(demo_store_url: str) -> Iterator[Store]:
    store = open_store(demo_store_url)
    yield store
    store.close()


def assert_delivered_exactly_once(api: FakeGaltea, store: Store) -> None:
    """The platform holds every session of the store once, with its status, turns (in order), spans and current
    evaluations, and nothing else."""
    sessions = store.list_sessions(limit=1000)
    assert sessions
    assert api.conflicts == 0, "a session was created twice"
    assert api.duplicate_spans == 0, "a span was posted twice"
    assert len(api.sessions) == len(sessions)
    turn_total = span_total = evaluation_total = 0
    for summary in sessions:
        detail = read_session(store, (summary.custom_id, summary.version))
        assert detail is not None
        [remote] = api.session_by_custom_id(detail.custom_id)
        assert remote["status"] == detail.status, detail.custom_id
        assert remote["error"] == (detail.error if detail.status == "FAILED" else None)
        assert remote["testCaseId"] == detail.test_case_id
        assert remote["isProduction"] == detail.is_production
        assert (remote["metadata"] or {}) == detail.metadata
        if detail.is_production:
            assert (remote["context"] or {}).get("value") == detail.context
        turns = api.turns_of(remote["id"])
        assert [(t.get("input"), t.get("actualOutput"), t["status"]) for t in turns] == [
            (t.input, t.output, t.status) for t in detail.inference_results], detail.custom_id
        for local, sent in zip(detail.inference_results, turns, strict=True):
            assert sent.get("inputTokens") == local.input_tokens
            assert sent.get("outputTokens") == local.output_tokens
            assert sent.get("tokens") == local.total_tokens
            assert sent.get("cost") == local.cost
            assert sent.get("error") == local.error
            assert sent["latency"] == pytest.approx(local.latency_ms, abs=0.01)
            assert {s["id"] for s in api.spans_of(sent["id"])} == {platform_span_id(s) for s in flatten(local.spans)}
            span_total += len(list(flatten(local.spans)))
        turn_total += len(detail.inference_results)
        # Its current evaluations that the platform can hold (a score in 0..1, no error), each once, on the
        # session or on its turn.
        platform_turn = {local.id: sent["id"] for local, sent in zip(detail.inference_results, turns, strict=True)}
        expected = sorted((e.name, platform_turn[turn.id] if turn is not None else None, e.score)
                          for e, turn in all_evaluations(detail) if not e.superseded and unsendable(e) is None)
        held = sorted((e["metric"], e["inferenceResultId"], e["score"]) for e in api.evaluations_of(remote["id"]))
        assert held == expected, detail.custom_id
        evaluation_total += len(expected)
    assert len(api.turns) == turn_total
    assert len(api.spans) == span_total
    assert len(api.evaluations) == evaluation_total
