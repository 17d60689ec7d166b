"""The embedded store: one SQLite file in WAL mode (readers are never blocked by the writer)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galtea_otel.evaluate.storage import ddl as evaluation_ddl
from galtea_otel.evaluate.storage import ensure_tables as ensure_evaluation_tables
from galtea_otel.store import turns as turns_sql
from galtea_otel.store.base import SCHEMA_VERSION, AnyKey, Key, StoreError, full_key, iter_chunks
from galtea_otel.store.filters import (
    NO_LIMIT,
    SQLITE,
    Cursor,
    SessionFilter,
    SessionPage,
    legacy_filter,
    page_query,
    run_page,
)
from galtea_otel.store.rows import (
    ADDED_COLUMNS,
    ADDED_INDEXES,
    LISTING_TEXT_CHARS,
    MESSAGE_COLUMNS,
    PROJECT_COLUMN_SQL,
    REKEYED,
    SESSION_COLUMNS,
    row_from_tuple,
    row_to_tuple,
    session_from_row,
)
from galtea_otel.store.turns import TurnsTx
from galtea_otel.sync import schema as sync_sql
from galtea_otel.sync.schema import OutboxItem, ParkedItem, SyncOverview, SyncState, sync_state_from_rows
from galtea_otel.translate.row import COLUMNS, SpanRow

if TYPE_CHECKING:  # the records (pydantic) are imported where one is made, not to open a store
    from galtea_otel.records import TestCase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS galtea_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, status INTEGER NOT NULL, error TEXT, session_event TEXT,
    own_custom_id TEXT, own_version TEXT, resource_version TEXT, custom_id TEXT, version TEXT,
    test_case_id TEXT, context TEXT, input TEXT, output TEXT, model TEXT,
    input_tokens INTEGER, output_tokens INTEGER, cache_read_tokens INTEGER, total_tokens INTEGER, cost REAL,
    abandoned INTEGER NOT NULL, metadata TEXT, received_ns INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_by_session ON spans (custom_id, version);
CREATE INDEX IF NOT EXISTS spans_unresolved ON spans (trace_id) WHERE own_custom_id IS NULL OR own_version IS NULL;
CREATE INDEX IF NOT EXISTS spans_held ON spans (received_ns) WHERE custom_id IS NULL;
CREATE TABLE IF NOT EXISTS sessions (
    custom_id TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL, error TEXT, test_case_id TEXT,
    context TEXT, metadata TEXT NOT NULL, started_ns INTEGER, ended_ns INTEGER, last_activity_ns INTEGER NOT NULL,
    turn_count INTEGER NOT NULL, input_tokens INTEGER, output_tokens INTEGER, total_tokens INTEGER, cost REAL,
    latency_ms REAL, assembly TEXT NOT NULL, updated_ns INTEGER NOT NULL, project TEXT NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE INDEX IF NOT EXISTS sessions_by_activity ON sessions (status, last_activity_ns);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions (started_ns);
CREATE TABLE IF NOT EXISTS test_cases (
    id TEXT PRIMARY KEY, input TEXT, expected_output TEXT, context TEXT, metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
""" + sync_sql.ddl("TEXT", "INTEGER") + ";" + evaluation_ddl("TEXT", "INTEGER", "REAL") + ";" + turns_sql.ddl(
    "TEXT", "INTEGER", "REAL")

_SQLITE_TYPES = {"text": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER", "project": PROJECT_COLUMN_SQL}
_INSERT = f"INSERT OR IGNORE INTO spans ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM spans"
# What reassembly reads on the write path: no message lists, and input and output cut to what a session listing
# shows (``Session.first_input`` / ``last_output``), not the (large) texts.
_SELECT_NO_CONTENT = "SELECT " + ", ".join(
    f"substr({c}, 1, {LISTING_TEXT_CHARS})" if c in ("input", "output") else "NULL" if c in MESSAGE_COLUMNS else c
    for c in COLUMNS) + " FROM spans"
_UPSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}, updated_ns)"
    f" VALUES ({', '.join('?' * len(SESSION_COLUMNS))}, ?)"
    f" ON CONFLICT (custom_id, version, project) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*SESSION_COLUMNS[2:], "updated_ns") if c != "project")
)


def path_from_url(url: str) -> Path:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a bare path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://"):])
    return Path(url)


class SQLiteStore:
    """A SQLite store. Thread-safe: one connection per thread, writes serialized by ``BEGIN IMMEDIATE``.

    ``synchronous`` is NORMAL by default: a committed transaction survives a crash of the process (kill -9);
    pass ``synchronous="FULL"`` (URL ``?synchronous=full``) to survive a power loss too.
    """

    def __init__(self, url: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000) -> None:
        base, _, query = url.partition("?")
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            if name == "synchronous":
                synchronous = value.upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"unknown synchronous mode {synchronous!r}: use NORMAL or FULL")
        self.url = url
        self.path = path_from_url(base)
        self._synchronous = synchronous
        self._busy_ms = busy_timeout_ms
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._open_and_migrate()
        ensure_evaluation_tables(self)  # issue 11: galtea_otel.evaluate.storage

    # --- connections ---------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=self._busy_ms / 1000)
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                # Checkpoint the WAL every 16 MiB rather than every 4 MiB: a quarter of the fsyncs on a busy
                # writer, for a WAL file that stays small.
                conn.execute("PRAGMA wal_autocheckpoint = 4096")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} is not a usable SQLite database: {exc}") from exc
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _open_and_migrate(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            raise StoreError(f"cannot create the store {self.path}: folder {self.path.parent} does not exist")
        conn = self._connect()
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a SQLite database (or it is corrupt): {exc}") from exc
        if tables and "galtea_meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database of something else (tables: {', '.join(sorted(tables)[:5])});"
                " give galtea-otel a file of its own"
            )
        if "galtea_meta" in tables:
            row = conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone()
            found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {found}, newer than this galtea-otel ({SCHEMA_VERSION}):"
                    " upgrade galtea-otel"
                )
            if found == SCHEMA_VERSION:
                return
        try:
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                rebuilt = _set_aside_rekeyed(conn)
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                added = [*sync_sql.ADDED_COLUMNS, *((t, c, _SQLITE_TYPES[k]) for t, c, k in ADDED_COLUMNS)]
                for table, column, kind in added:  # a new store, or an older schema: migrated in place
                    if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                _copy_rekeyed(conn, rebuilt)
                for name, table, column in ADDED_INDEXES:
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")
                for statement in turns_sql.PARTIAL_INDEXES:
                    conn.execute(statement)
                conn.execute(
                    "INSERT OR REPLACE INTO galtea_meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot create the schema in {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteTx]:
        conn = self._connect()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    # --- reading -------------------------------------------------------------------------------------------------

    def list_sessions(
        self, *, status: str | None = None, version: str | None = None, limit: int = 50,
        filter: SessionFilter | None = None, after: Cursor | None = None, evaluations: Sequence[str] = (),
    ) -> SessionPage:
        flt = legacy_filter(filter, status, version, evaluations)
        query = page_query(SESSION_COLUMNS, flt, after, limit if limit >= 0 else NO_LIMIT, SQLITE)
        conn = self._connect()
        return run_page(query, limit if limit >= 0 else NO_LIMIT,
                        lambda sql, args: conn.execute(sql, args).fetchall(), session_from_row)

    def find_session_key(self, custom_id: str, version: str | None = None, project: str | None = None
                         ) -> Key | None:
        sql, args = "SELECT custom_id, version, project FROM sessions WHERE custom_id = ?", [custom_id]
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        if project is not None:
            sql += " AND project = ?"
            args.append(project)
        row = self._connect().execute(
            sql + " ORDER BY started_ns DESC, version DESC, project LIMIT 1", args).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def read_session_rows(self, key: AnyKey) -> list[SpanRow]:
        key = full_key(key)
        return _session_rows(self._connect(), key)

    def read_session_summary(self, key: AnyKey) -> dict[str, Any] | None:
        row = self._connect().execute(
            f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE {turns_sql.KEY_EQ}", full_key(key)).fetchone()
        return dict(zip(SESSION_COLUMNS, row, strict=True)) if row else None

    def read_turns(self, key: AnyKey) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._connect().execute(turns_sql.READ, full_key(key))]

    def session_assembly(self, key: AnyKey) -> dict[str, Any]:
        key = full_key(key)
        row = self._connect().execute(
            "SELECT assembly FROM sessions WHERE custom_id = ? AND version = ? AND project = ?", key).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def counters(self) -> dict[str, int]:
        return dict(self._connect().execute("SELECT name, value FROM counters ORDER BY name").fetchall())

    def put_test_cases(self, cases: Iterable[TestCase]) -> int:
        rows = [(c.id, c.input, c.expected_output, c.context, json.dumps(c.metadata, sort_keys=True))
                for c in cases]
        conn = self._connect()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO test_cases (id, input, expected_output, context, metadata) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET input = excluded.input,"
                    " expected_output = excluded.expected_output, context = excluded.context,"
                    " metadata = excluded.metadata",
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return len(rows)

    # --- the Galtea sync outbox --------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def sync_backfill(self, now_ns: int) -> int:
        with self._write() as conn:
            return conn.execute(sync_sql.BACKFILL, (now_ns, now_ns)).rowcount

    def sync_claim(self, now_ns: int, limit: int, lease_ns: int) -> list[OutboxItem]:
        with self._write() as conn:
            items = [OutboxItem((r[0], r[1], r[2]), r[3], r[4])
                     for r in conn.execute(sync_sql.DUE, (now_ns, limit))]
            conn.executemany(sync_sql.LEASE, [(now_ns + lease_ns, *i.key, i.seq) for i in items])
        return items

    def sync_state(self, key: AnyKey) -> SyncState | None:
        key = full_key(key)
        conn = self._connect()
        row = conn.execute(sync_sql.SESSION_STATE, key).fetchone()
        if row is None:
            return None
        return sync_state_from_rows(row, conn.execute(sync_sql.TURNS_STATE, key),
                                    conn.execute(sync_sql.INTENTS_STATE, key))

    def sync_save_session(
        self, key: AnyKey, platform_id: str | None, version_id: str | None, status: str | None,
        fingerprint: str | None,
    ) -> None:
        key = full_key(key)
        with self._write() as conn:
            conn.execute(sync_sql.SAVE_SESSION, (*key, platform_id, version_id, status, fingerprint, time.time_ns()))

    def sync_save_turn(
        self, key: AnyKey, turn_id: str, platform_id: str, spans_sent: Iterable[str], fingerprint: str | None,
    ) -> None:
        key = full_key(key)
        with self._write() as conn:
            conn.execute(sync_sql.SAVE_TURN,
                         (*key, turn_id, platform_id, json.dumps(sorted(spans_sent)), fingerprint))
            conn.execute(sync_sql.FORGET_INTENT, (*key, turn_id))

    def sync_save_intent(self, key: AnyKey, turn_id: str, body: dict[str, Any]) -> None:
        key = full_key(key)
        with self._write() as conn:
            conn.execute(sync_sql.SAVE_INTENT, (*key, turn_id, json.dumps(body, sort_keys=True)))

    def sync_forget_turn(self, key: AnyKey, turn_id: str) -> None:
        key = full_key(key)
        with self._write() as conn:
            conn.execute(sync_sql.FORGET_TURN, (*key, turn_id))
            conn.execute(sync_sql.FORGET_INTENT, (*key, turn_id))

    def sync_complete(
        self, item: OutboxItem, outcome: str, now_ns: int, *, next_attempt_ns: int = 0, error: str | None = None,
        synced_updated_ns: int | None = None,
    ) -> None:
        with self._write() as conn:
            if synced_updated_ns is not None:
                conn.execute(sync_sql.SYNCED, (synced_updated_ns, *item.key))
            if outcome == "done":
                if conn.execute(sync_sql.DONE, (*item.key, item.seq)).rowcount == 0:
                    conn.execute(sync_sql.AGAIN, (now_ns, *item.key))
            elif outcome == "defer":
                conn.execute(sync_sql.DEFER, (next_attempt_ns, error, *item.key))
            elif outcome == "park":
                if conn.execute(sync_sql.PARK, (error, *item.key, item.seq)).rowcount == 0:
                    conn.execute(sync_sql.AGAIN, (now_ns, *item.key))
            elif outcome == "release":  # claimed but not tried (the worker is stopping, or paused)
                conn.execute(sync_sql.AGAIN, (next_attempt_ns or now_ns, *item.key))
            else:
                raise ValueError(f"unknown outcome {outcome!r}")

    def sync_overview(self, parked_limit: int = 50) -> SyncOverview:
        conn = self._connect()
        counts = dict(conn.execute(sync_sql.COUNTS).fetchall())
        synced = conn.execute(sync_sql.SYNCED_COUNT).fetchone()[0]
        parked = [ParkedItem((r[0], r[1], r[2]), r[3], r[4], r[5])
                  for r in conn.execute(sync_sql.PARKED, (parked_limit,))]
        return SyncOverview(pending=counts.get("pending", 0), parked=counts.get("parked", 0),
                            synced_sessions=synced, parked_items=parked)

    def sync_requeue_parked(self, now_ns: int) -> int:
        with self._write() as conn:
            return conn.execute(sync_sql.REQUEUE_PARKED, (now_ns,)).rowcount

    def get_test_case(self, test_case_id: str) -> TestCase | None:
        row = self._connect().execute(
            "SELECT id, input, expected_output, context, metadata FROM test_cases WHERE id = ?", (test_case_id,)
        ).fetchone()
        return _test_case(row) if row else None

    def list_test_cases(self) -> list[TestCase]:
        rows = self._connect().execute(
            "SELECT id, input, expected_output, context, metadata FROM test_cases ORDER BY id"
        ).fetchall()
        return [_test_case(r) for r in rows]


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _set_aside_rekeyed(conn: sqlite3.Connection) -> list[str]:
    """Schema v7 (issue 12), first half of the in-place rebuild of the tables whose key gains ``project``
    (SQLite cannot change a primary key): rename each such table of an older store to ``<table>__pre7`` and drop
    its indexes, so that the schema's CREATE statements make the new table and its indexes. Inside the opening
    transaction: a failure leaves the store as it was. Idempotent: a table that has ``project`` is left alone."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    moved = []
    for table, _key in REKEYED:
        if table not in tables or "project" in _columns(conn, table):
            continue
        old = f"{table}__pre7"
        conn.execute(f"DROP TABLE IF EXISTS {old}")
        conn.execute(f"ALTER TABLE {table} RENAME TO {old}")
        for (index,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                                     " AND sql IS NOT NULL", (old,)).fetchall():
            conn.execute(f"DROP INDEX {index}")
        moved.append(table)
    return moved


def _copy_rekeyed(conn: sqlite3.Connection, tables: Sequence[str]) -> None:
    """Second half: copy the set-aside rows into the new tables (project: the default) and drop the old ones."""
    for table in tables:
        old = f"{table}__pre7"
        kept = [c for c in _columns(conn, old) if c in set(_columns(conn, table))]
        conn.execute(f"INSERT INTO {table} ({', '.join(kept)}) SELECT {', '.join(kept)} FROM {old}")
        conn.execute(f"DROP TABLE {old}")


def _test_case(row: Sequence[Any]) -> TestCase:
    from galtea_otel.records import TestCase

    return TestCase(id=row[0], input=row[1], expected_output=row[2], context=row[3],
                    metadata=json.loads(row[4] or "{}"))


def _session_rows(conn: sqlite3.Connection, key: Key, *, content: bool = True) -> list[SpanRow]:
    select = _SELECT if content else _SELECT_NO_CONTENT
    cursor = conn.execute(select + " WHERE custom_id = ? AND version = ? AND project = ?", key)
    return [row_from_tuple(r) for r in cursor]


def _session_values(summary: dict[str, Any]) -> list[Any]:
    values = [summary[c] for c in SESSION_COLUMNS]
    values[_METADATA_COLUMN] = _SORTED_JSON.encode(summary["metadata"])  # json.dumps(..., sort_keys=True)
    return values


_METADATA_COLUMN = SESSION_COLUMNS.index("metadata")
_SORTED_JSON = json.JSONEncoder(sort_keys=True)  # made once, not per session written


class _SQLiteTx(TurnsTx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, args).fetchall()

    def _x(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, args)

    def _xmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def _in(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        return [(f"{column} IN ({', '.join('?' * len(chunk))})", list(chunk)) for chunk in iter_chunks(values, 500)]

    def lock_traces(self, trace_ids: Sequence[str]) -> None:
        return None  # BEGIN IMMEDIATE already made this the only writer

    def lock_sessions(self, keys: Sequence[Key]) -> None:
        return None

    def insert_spans(self, rows: Sequence[SpanRow]) -> int:
        before = self._conn.total_changes
        self._conn.executemany(_INSERT, [row_to_tuple(r) for r in rows])
        return self._conn.total_changes - before

    def traces_needing_resolution(self, trace_ids: Sequence[str], project: str) -> set[str]:
        found: set[str] = set()
        for chunk in iter_chunks(sorted(trace_ids), 500):
            marks = ", ".join("?" * len(chunk))
            found.update(r[0] for r in self._conn.execute(
                turns_sql.UNRESOLVED.format(
                    cond=f"trace_id IN ({marks}) AND project = ?", unresolved=" INDEXED BY spans_unresolved",
                    weak=" INDEXED BY spans_weak"), [*chunk, project, *chunk, project]))
        return found

    def trace_rows(self, trace_ids: Sequence[str], project: str) -> list[SpanRow]:
        rows: list[SpanRow] = []
        for chunk in iter_chunks(sorted(trace_ids), 500):
            marks = ", ".join("?" * len(chunk))
            for r in self._conn.execute(
                "SELECT trace_id, span_id, parent_span_id, start_ns, own_custom_id, own_version,"
                f" resource_version, custom_id, version, key_weak FROM spans WHERE trace_id IN ({marks})"
                " AND project = ?", (*chunk, project)):
                rows.append(SpanRow(trace_id=r[0], span_id=r[1], parent_span_id=r[2], name="", kind="",
                                    start_ns=r[3], end_ns=r[3], status=0, own_custom_id=r[4], own_version=r[5],
                                    resource_version=r[6], custom_id=r[7], version=r[8],
                                    key_weak=bool(r[9]), project=project))
        return rows

    def set_keys(self, updates: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        self._conn.executemany(
            "UPDATE spans SET custom_id = ?, version = ? WHERE trace_id = ? AND span_id = ?",
            [(c, v, t, s) for t, s, c, v in updates],
        )

    def session_rows(self, keys: Sequence[Key], *, content: bool = True) -> dict[Key, list[SpanRow]]:
        found: dict[Key, list[SpanRow]] = {key: [] for key in keys}
        select = _SELECT if content else _SELECT_NO_CONTENT
        for chunk in iter_chunks(sorted({k[0] for k in keys}), 500):
            marks = ", ".join("?" * len(chunk))
            for values in self._conn.execute(select + f" WHERE custom_id IN ({marks})", chunk):
                row = row_from_tuple(values)
                rows = found.get((row.custom_id, row.version, row.project))  # type: ignore[arg-type]
                if rows is not None:
                    rows.append(row)
        return found

    def test_case_context(self, test_case_id: str) -> str | None:
        row = self._conn.execute("SELECT context FROM test_cases WHERE id = ?", (test_case_id,)).fetchone()
        return row[0] if row else None

    def upsert_sessions(self, summaries: Sequence[dict[str, Any]]) -> None:
        now = time.time_ns()
        self._conn.executemany(_UPSERT_SESSION, [(*_session_values(s), now) for s in summaries])

    def delete_session(self, key: Key) -> None:
        self._conn.execute("DELETE FROM sessions WHERE custom_id = ? AND version = ? AND project = ?", key)

    def idle_sessions(self, last_activity_before_ns: int) -> list[Key]:
        return [(r[0], r[1], r[2]) for r in self._conn.execute(
            "SELECT custom_id, version, project FROM sessions WHERE status = 'PENDING' AND last_activity_ns < ?"
            " ORDER BY custom_id, version, project", (last_activity_before_ns,))]

    def held_traces(self, received_before_ns: int) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._conn.execute(
            "SELECT project, trace_id FROM spans WHERE custom_id IS NULL GROUP BY project, trace_id"
            " HAVING max(received_ns) < ? ORDER BY trace_id, project", (received_before_ns,))]

    def unkeyed_rows(self, trace_id: str, project: str) -> list[SpanRow]:
        return [row_from_tuple(r) for r in self._conn.execute(
            _SELECT + " WHERE trace_id = ? AND project = ? AND custom_id IS NULL", (trace_id, project))]

    def delete_unkeyed(self, trace_id: str, project: str) -> int:
        return self._conn.execute("DELETE FROM spans WHERE trace_id = ? AND project = ? AND custom_id IS NULL",
                                  (trace_id, project)).rowcount

    def add_counter(self, name: str, amount: int) -> None:
        self._conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (name, amount))

    def enqueue_sync(self, keys: Sequence[Key], now_ns: int) -> None:
        self._conn.executemany(sync_sql.ENQUEUE, [(*k, now_ns, now_ns) for k in keys])
