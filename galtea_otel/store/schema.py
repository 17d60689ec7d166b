"""Every table of a store and its migrations, written once for SQLite and PostgreSQL (``store.dialect``).

``statements(dialect)`` are the CREATE statements of a store of the current schema (``IF NOT EXISTS``: run on
an older store too, they add the tables it lacks); :func:`migrate` brings a store of any earlier schema to the
current one, in the opening transaction, through the steps both stores share. What only one store does is
passed in as ``Rekey``: SQLite cannot change a primary key (v7's tables are rebuilt in place), PostgreSQL
swaps it; PostgreSQL also adds its pg_trgm indexes (``extra``).

The Galtea outbox's tables are here too (the store keeps one schema version for the whole file); what is done
with them is in :mod:`galtea_otel.sync.outbox`, which the stores never import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from galtea_otel.evaluate.storage import ddl as evaluation_ddl
from galtea_otel.store import turns as turns_sql
from galtea_otel.store.base import SCHEMA_VERSION, StoreError
from galtea_otel.store.dialect import Dialect, Sql
from galtea_otel.store.rows import ADDED_COLUMNS, ADDED_INDEXES

CORE_TABLES = ("galtea_meta", "spans", "sessions", "test_cases", "counters", "turns")
OUTBOX_TABLES = ("galtea_outbox", "galtea_sync_sessions", "galtea_sync_turns", "galtea_sync_intents")
TABLES = (*CORE_TABLES, *OUTBOX_TABLES)

# Columns added to the sync tables after their first release (as ``store.rows.ADDED_COLUMNS``).
# v3: galtea_sync_turns.fingerprint (NULL for a turn sent by an older galtea-otel: updated once, at its
# session's next sync). v4: the table galtea_sync_intents (created by its CREATE TABLE IF NOT EXISTS).
OUTBOX_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("galtea_sync_turns", "fingerprint", "text"),)

VERSION_OF = "SELECT value FROM galtea_meta WHERE key = 'schema_version'"
SET_VERSION = ("INSERT INTO galtea_meta (key, value) VALUES ('schema_version', ?)"
               " ON CONFLICT (key) DO UPDATE SET value = excluded.value")


def _core(d: Dialect) -> str:
    i, big, real = d.ident, d.bigint, d.real
    return f"""
CREATE TABLE IF NOT EXISTS galtea_meta (key {i} PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spans (
    trace_id {i} NOT NULL, span_id {i} NOT NULL, parent_span_id {i}, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_ns {big} NOT NULL, end_ns {big} NOT NULL, status INTEGER NOT NULL, error TEXT, session_event TEXT,
    own_custom_id {i}, own_version {i}, resource_version {i}, custom_id {i}, version {i},
    test_case_id {i}, context TEXT, input TEXT, output TEXT, model TEXT,
    input_tokens {big}, output_tokens {big}, cache_read_tokens {big}, total_tokens {big}, cost {real},
    abandoned {d.boolean} NOT NULL, metadata TEXT, received_ns {big} NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_session ON spans (custom_id, version);
CREATE INDEX IF NOT EXISTS spans_unresolved ON spans (trace_id) WHERE own_custom_id IS NULL OR own_version IS NULL;
CREATE INDEX IF NOT EXISTS spans_held ON spans (received_ns) WHERE custom_id IS NULL;
CREATE TABLE IF NOT EXISTS sessions (
    custom_id {i} NOT NULL, version {i} NOT NULL, status TEXT NOT NULL, error TEXT, test_case_id {i},
    context TEXT, metadata TEXT NOT NULL, started_ns {big}, ended_ns {big}, last_activity_ns {big} NOT NULL,
    turn_count INTEGER NOT NULL, input_tokens {big}, output_tokens {big}, total_tokens {big}, cost {real},
    latency_ms {real}, assembly TEXT NOT NULL, updated_ns {big} NOT NULL, project {i} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE INDEX IF NOT EXISTS sessions_by_activity ON sessions (status, last_activity_ns);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_ns);
CREATE TABLE IF NOT EXISTS test_cases (
    id {i} PRIMARY KEY, input TEXT, expected_output TEXT, context TEXT, metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name {i} PRIMARY KEY, value {big} NOT NULL);
"""


def _outbox(d: Dialect) -> str:
    """The Galtea sync's tables (schema v2-v4, keyed by project since v7): see :mod:`galtea_otel.sync.outbox`."""
    i, big = d.ident, d.bigint
    return f"""
CREATE TABLE IF NOT EXISTS galtea_outbox (
    custom_id {i} NOT NULL, version {i} NOT NULL, seq {big} NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_ns {big} NOT NULL, enqueued_ns {big} NOT NULL,
    last_error TEXT, project {i} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE INDEX IF NOT EXISTS galtea_outbox_due ON galtea_outbox (state, next_attempt_ns);
CREATE TABLE IF NOT EXISTS galtea_sync_sessions (
    custom_id {i} NOT NULL, version {i} NOT NULL, platform_id TEXT, version_id TEXT, status TEXT,
    fingerprint TEXT, synced_updated_ns {big}, updated_ns {big} NOT NULL,
    project {i} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE TABLE IF NOT EXISTS galtea_sync_turns (
    custom_id {i} NOT NULL, version {i} NOT NULL, turn_id {i} NOT NULL,
    platform_id TEXT NOT NULL, spans_sent TEXT NOT NULL, fingerprint TEXT,
    project {i} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project, turn_id)
);
CREATE TABLE IF NOT EXISTS galtea_sync_intents (
    custom_id {i} NOT NULL, version {i} NOT NULL, turn_id {i} NOT NULL, body TEXT NOT NULL,
    project {i} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project, turn_id)
);
"""


def needs_migration(found: int, store: str) -> bool:
    """Whether a store of schema ``found`` (0: none yet) is migrated; a newer one is refused (``store`` names it
    in the message)."""
    if found > SCHEMA_VERSION:
        raise StoreError(f"{store} has schema version {found}, newer than this galtea-otel ({SCHEMA_VERSION}):"
                         " upgrade galtea-otel")
    return found < SCHEMA_VERSION


def statements(d: Dialect) -> list[str]:
    """The CREATE statements of every table and index of the current schema, in this dialect."""
    text = ";".join((_core(d), _outbox(d), evaluation_ddl(d.ident, d.bigint, d.real),
                     turns_sql.ddl(d.ident, d.bigint, d.real)))
    return [s for s in text.split(";") if s.strip()]


def column_type(d: Dialect, kind: str) -> str:
    """The type of an added column (``ADDED_COLUMNS``' logical types; ``project``: the default for old rows)."""
    if kind == "project":
        return f"{d.ident} NOT NULL DEFAULT 'default'"
    return d.type(kind)


@dataclass
class Rekey:
    """The steps of a migration only one store takes (see the module's docstring)."""

    before: Callable[[Sql], Any] = lambda sql: None  # before the CREATE statements; its result goes to ``after``
    after: Callable[[Sql, Any], None] = lambda sql, state: None  # once every column exists
    extra: Sequence[Callable[[Sql], None]] = field(default=())  # last, before the version is written


def migrate(sql: Sql, rekey: Rekey) -> None:
    """Create or migrate the store's schema to ``SCHEMA_VERSION`` inside the caller's (opening) transaction: a
    failure leaves the store as it was. Idempotent; the caller checked the version is older."""
    d = sql.dialect
    state = rekey.before(sql)
    for statement in statements(d):
        sql.execute(statement)
    for table, column, kind in (*OUTBOX_ADDED_COLUMNS, *ADDED_COLUMNS):  # an older schema: migrated in place
        if column not in {r[0] for r in sql.query(d.columns_sql, (table,))}:
            sql.execute(f"ALTER TABLE {table} ADD COLUMN {column} {column_type(d, kind)}")
    rekey.after(sql, state)
    for name, table, column in ADDED_INDEXES:
        sql.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")
    for statement in turns_sql.PARTIAL_INDEXES:
        sql.execute(statement)
    for step in rekey.extra:
        step(sql)
    sql.execute(SET_VERSION, (str(SCHEMA_VERSION),))
