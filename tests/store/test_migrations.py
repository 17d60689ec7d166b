"""Stores of earlier schemas open and migrate in place, the same on SQLite and PostgreSQL: the migration steps
are written once (``galtea_otel.store.schema.migrate``), so each case runs against both stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from galtea_otel.store import Store, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from galtea_otel.store.rows import ADDED_COLUMNS, ADDED_INDEXES
from galtea_otel.store.schema import OUTBOX_ADDED_COLUMNS
from galtea_otel.store.turns import PARTIAL_INDEXES
from tests.store.test_stores import _sql


def _reopen(store: Store) -> Store:
    url = store.url if store.url.startswith("sqlite") else store._conninfo  # type: ignore[attr-defined]
    store.close()
    return open_store(url)


def _raw(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return store.read_sql(sql)


def _columns(store: Store, table: str) -> set[str]:
    return {r[0] for r in store.read_sql(store.dialect.columns_sql, (table,))}


def test_a_schema_v4_store_is_migrated_in_place(make_store: Callable[[], Store]) -> None:
    """A store written before schema v5 (no content-model, user or listing columns, no turns, no sync
    fingerprint) opens, gains the columns and indexes and keeps its rows."""
    store = make_store()
    _sql(store, [
        *(f"DROP INDEX {name}" for name, _, _ in ADDED_INDEXES),  # indexes on the added columns go first
        *(f"DROP INDEX {s.split()[5]}" for s in PARTIAL_INDEXES),
        "DROP TABLE turns",
        *(f"ALTER TABLE {t} DROP COLUMN {c}" for t, c, _ in (*ADDED_COLUMNS, *OUTBOX_ADDED_COLUMNS)),
        "UPDATE galtea_meta SET value = '4' WHERE key = 'schema_version'",
        "INSERT INTO sessions (custom_id, version, status, metadata, last_activity_ns, turn_count, assembly,"
        " updated_ns) VALUES ('old', '1', 'COMPLETED', '{}', 1, 0, '{}', 1)",
    ])
    assert "user_id" not in _columns(store, "spans")
    migrated = _reopen(store)
    try:
        assert [s.custom_id for s in migrated.list_sessions()] == ["old"]
        assert migrated.list_sessions()[0].user_id is None
        assert _raw(migrated, "SELECT value FROM galtea_meta WHERE key = 'schema_version'") == [
            (str(SCHEMA_VERSION),)]
        for table, column, _ in (*ADDED_COLUMNS, *OUTBOX_ADDED_COLUMNS):
            assert column in _columns(migrated, table), (table, column)
        assert _columns(migrated, "turns")
    finally:
        migrated.close()
