"""The schema is written once (``galtea_otel.store.schema``): a new SQLite store and a new PostgreSQL store have
the same tables, with the same columns in the same order, and the same indexes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from galtea_otel.evaluate.storage import TABLES as EVALUATION_TABLES
from galtea_otel.store import open_store
from galtea_otel.store.schema import TABLES
from tests.store.test_stores import _pg_admin, _require_pg, _schema_url


def _sqlite_layout(path: Path) -> tuple[dict[str, list[str]], set[str]]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        tables = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in (*TABLES, *EVALUATION_TABLES)}
        indexes = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    finally:
        conn.close()
    return tables, indexes


def _pg_layout(conninfo: str) -> tuple[dict[str, list[str]], set[str]]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        tables: dict[str, list[str]] = {}
        for t in (*TABLES, *EVALUATION_TABLES):
            tables[t] = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s ORDER BY ordinal_position", (t,))]
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%%_pkey'")}
    return tables, indexes


def test_sqlite_and_postgres_stores_have_the_same_tables_and_indexes(tmp_path: Path) -> None:
    _require_pg()
    sqlite_store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    sqlite_store.close()
    schema = f"galtea_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        pg_store: Any = open_store(_schema_url(schema))
        conninfo = pg_store._conninfo
        pg_store.close()
        pg_tables, pg_indexes = _pg_layout(conninfo)
    finally:
        with _pg_admin() as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    sqlite_tables, sqlite_indexes = _sqlite_layout(tmp_path / "s.db")
    assert all(sqlite_tables.values())
    assert sqlite_tables == pg_tables
    # PostgreSQL adds its pg_trgm text-search indexes (when the server lets it create the extension).
    assert sqlite_indexes == pg_indexes - {"spans_input_trgm", "spans_output_trgm"}
