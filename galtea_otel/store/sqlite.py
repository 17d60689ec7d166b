"""The embedded store: one SQLite file in WAL mode (readers are never blocked by the writer)."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from galtea_otel.evaluate.storage import ensure_tables as ensure_evaluation_tables
from galtea_otel.store import schema, shared
from galtea_otel.store import turns as turns_sql
from galtea_otel.store.base import AnyKey, Key, StoreError, full_key, iter_chunks
from galtea_otel.store.checkpoint import Checkpointer
from galtea_otel.store.dialect import SQLITE as SQL_DIALECT
from galtea_otel.store.dialect import Sql
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
    LISTING_TEXT_CHARS,
    MESSAGE_COLUMNS,
    REKEYED,
    SESSION_COLUMNS,
    row_from_tuple,
    row_to_tuple,
    session_from_row,
)
from galtea_otel.store.turns import TurnsTx
from galtea_otel.translate.row import COLUMNS, SpanRow


def _bind_none_and_bool_directly() -> None:
    """Spare CPython 3.11's sqlite3 its slow path for ``None`` and ``bool`` parameters.

    Before 3.12, binding a parameter that is not an exact int, float, str or bytearray looks for an adapter and,
    finding none, asks the protocol type for ``__adapt__``: an ``AttributeError`` formatted and thrown away for
    every ``None`` (a NULL column) and every ``bool``. A span row binds about twenty of them: measured under
    callgrind on benchmarks/bench_export.py's workload, about 6% of the exporter's instructions; binding 30-column
    rows with 20 ``None`` and 2 ``bool`` runs 2.2x faster with the adapters (BENCHMARKS.md, stop 18). An adapter
    registered for the two types is found by one dict look-up and binds exactly what the slow path bound (``None``
    as NULL, ``True`` / ``False`` as 1 / 0), so this changes no stored value, here or in the application's own use
    of sqlite3 (tests/store/test_binding.py); an adapter the application registered for either type is left as
    it is."""
    protocol = sqlite3.PrepareProtocol
    null: Callable[[Any], Any] = {}.get  # {}.get(value) is None: a C call, no Python frame
    adapters: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = ((type(None), null), (bool, int))
    for kind, adapter in adapters:
        if (kind, protocol) not in sqlite3.adapters:
            sqlite3.register_adapter(kind, adapter)


_bind_none_and_bool_directly()


_INSERT = (f"INSERT OR IGNORE INTO spans ({', '.join((*COLUMNS, *turns_sql.EXTRA_COLUMNS))})"
           f" VALUES ({', '.join('?' * (len(COLUMNS) + len(turns_sql.EXTRA_COLUMNS)))})")
_UNPLACED = (None, None)  # root_id, flags of a span not placed yet (Pipeline._apply_trace places it)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM spans"
# What reassembly reads on the write path: no message lists, and input and output cut to what a session listing
# shows (``Session.first_input`` / ``last_output``), not the (large) texts.
_SELECT_NO_CONTENT = "SELECT " + ", ".join(
    f"substr({c}, 1, {LISTING_TEXT_CHARS})" if c in ("input", "output") else "NULL" if c in MESSAGE_COLUMNS else c
    for c in COLUMNS) + " FROM spans"
_UPSERT_SESSION = shared.UPSERT_SESSION
PAGE_SIZE = 8192  # of a new store's file
WAL_CHECKPOINT_BYTES = 16 << 20  # the WAL is checkpointed once it holds this much


def path_from_url(url: str) -> Path:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or a bare path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://"):])
    return Path(url)


class SQLiteStore(shared.SharedStore):
    """A SQLite store. Thread-safe: one connection per thread, writes serialized by ``BEGIN IMMEDIATE``.

    ``synchronous`` is NORMAL by default: a committed transaction survives a crash of the process (kill -9);
    pass ``synchronous="FULL"`` (URL ``?synchronous=full``) to survive a power loss too.

    ``checkpoint``: ``"inline"`` (the default) lets a commit copy the WAL into the database file every 16 MiB, as
    SQLite does; ``"background"`` (URL ``?checkpoint=background``; what ``galtea-otel serve`` uses) does it on a
    thread of its own beside the writer (:mod:`galtea_otel.store.checkpoint`).
    """

    def __init__(self, url: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 30_000,
                 checkpoint: str = "inline") -> None:
        base, _, query = url.partition("?")
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            if name == "synchronous":
                synchronous = value.upper()
            elif name == "checkpoint":
                checkpoint = value.lower()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise StoreError(f"unknown synchronous mode {synchronous!r}: use NORMAL or FULL")
        if checkpoint not in ("inline", "background"):
            raise StoreError(f"unknown checkpoint mode {checkpoint!r}: use inline or background")
        self.url = url
        self.dialect = SQL_DIALECT
        self.path = path_from_url(base)
        self._synchronous = synchronous
        self._busy_ms = busy_timeout_ms
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.checkpointer = Checkpointer(self.path, self._write_lock) if checkpoint == "background" else None
        self._open_and_migrate()
        ensure_evaluation_tables(self)  # issue 11: galtea_otel.evaluate.storage

    @property
    def synchronous(self) -> str:
        """The ``PRAGMA synchronous`` every connection uses (what the receiver's inbox uses too)."""
        return self._synchronous

    # --- connections ---------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=256,
                                       timeout=self._busy_ms / 1000)
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
                # A new store's pages are 8 KiB (SQLite's default: 4 KiB; a store that has pages keeps theirs): a
                # turn's row (2-3 KB with 1 KB of input and output) took a 4 KiB page of its own, where 8 KiB hold
                # three; fewer pages to write and checkpoint (BENCHMARKS.md, stop 18). Set before WAL mode, which
                # fixes the size of an empty file's pages.
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                # Checkpoint the WAL every 16 MiB rather than every 4 MiB: a quarter of the fsyncs on a busy
                # writer, for a WAL file that stays small. With a checkpoint thread, never in a commit.
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                pages = 0 if self.checkpointer is not None else WAL_CHECKPOINT_BYTES // page
                conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
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
            row = conn.execute(schema.VERSION_OF).fetchone()
            if not schema.needs_migration(int(row[0]) if row else 0, str(self.path)):
                return
        try:
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                schema.migrate(_Sql(conn), schema.Rekey(before=_set_aside_rekeyed, after=_copy_rekeyed))
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot create the schema in {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteTx]:
        with self._write() as conn:
            yield _SQLiteTx(conn)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
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
        return turns_sql.records_of(self._connect().execute(turns_sql.READ, full_key(key)).fetchall())

    def session_assembly(self, key: AnyKey) -> dict[str, Any]:
        key = full_key(key)
        row = self._connect().execute(
            "SELECT assembly FROM sessions WHERE custom_id = ? AND version = ? AND project = ?", key).fetchone()
        return dict(json.loads(row[0])) if row else {}

    # --- plain SQL (store.shared, the Galtea outbox, the evaluations) ------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception): the records'
        (``transaction``) and the plain SQL's (``write_sql``)."""
        conn = self._connect()
        if self.checkpointer is not None and self.checkpointer.wants_lock:
            self.checkpointer.wait_turn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if self.checkpointer is not None:
            self.checkpointer.poke()

    @contextmanager
    def write_sql(self) -> Iterator[_Sql]:
        with self._write() as conn:
            yield _Sql(conn)

    def read_sql(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connect().execute(sql, tuple(args)).fetchall()


class _Sql:
    """Plain SQL on one connection (``store.dialect.Sql``)."""

    dialect = SQL_DIALECT

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return int(self._conn.execute(sql, tuple(args)).rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(args)).fetchall()


def _columns(sql: Sql, table: str) -> list[str]:
    return [r[0] for r in sql.query(SQL_DIALECT.columns_sql, (table,))]


def _set_aside_rekeyed(sql: Sql) -> list[str]:
    """Schema v7 (issue 12), first half of the in-place rebuild of the tables whose key gains ``project``
    (SQLite cannot change a primary key): rename each such table of an older store to ``<table>__pre7`` and drop
    its indexes, so that the schema's CREATE statements make the new table and its indexes. Inside the opening
    transaction: a failure leaves the store as it was. Idempotent: a table that has ``project`` is left alone."""
    tables = {r[0] for r in sql.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    moved = []
    for table, _key in REKEYED:
        if table not in tables or "project" in _columns(sql, table):
            continue
        old = f"{table}__pre7"
        sql.execute(f"DROP TABLE IF EXISTS {old}")
        sql.execute(f"ALTER TABLE {table} RENAME TO {old}")
        for (index,) in sql.query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                                  " AND sql IS NOT NULL", (old,)):
            sql.execute(f"DROP INDEX {index}")
        moved.append(table)
    return moved


def _copy_rekeyed(sql: Sql, tables: list[str]) -> None:
    """Second half: copy the set-aside rows into the new tables (project: the default) and drop the old ones."""
    for table in tables:
        old = f"{table}__pre7"
        kept = [c for c in _columns(sql, old) if c in set(_columns(sql, table))]
        sql.execute(f"INSERT INTO {table} ({', '.join(kept)}) SELECT {', '.join(kept)} FROM {old}")
        sql.execute(f"DROP TABLE {old}")


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


# Bound parameters a multi-row statement has at most (SQLite allows 32,766 since 3.32, 999 before): a prepared
# statement's program grows with its rows (about 5 KB a row of 30 columns), and the connection keeps each text's.
_ROW_VARIABLES = 8192 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_MULTI: dict[tuple[str, int], str] = {}


def _insert_many(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``conn.executemany(sql, rows)`` for an ``INSERT ... VALUES (?, ...) [ON CONFLICT ...]``, as statements of
    many rows each. executemany steps the statement once a row and releases the interpreter lock at every step;
    while another thread runs Python flat out (an application's hot loop), each step waits for the lock again
    (the switch interval, 5 ms), so a batch of 2,000 rows took seconds of the export thread's wall time and the
    queue behind it overflowed. One statement of up to ``_ROW_VARIABLES`` parameters releases it once; its rows
    are a power of two (``iter_chunks``), so that every text is prepared once, then taken from the cache."""
    if len(rows) < 2:
        conn.executemany(sql, rows)
        return
    width = len(rows[0])
    start = sql.index("VALUES (") + len("VALUES ")
    end = sql.index(")", start) + 1
    for chunk in iter_chunks(rows, max(1, _ROW_VARIABLES // width)):
        text = _MULTI.get((sql, len(chunk)))
        if text is None:
            text = sql[:start] + ", ".join([sql[start:end]] * len(chunk)) + sql[end:]
            if len(_MULTI) > 256:
                _MULTI.clear()
            _MULTI[(sql, len(chunk))] = text
        conn.execute(text, list(itertools.chain.from_iterable(chunk)))


class _SQLiteTx(TurnsTx, shared.SharedTx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.sql: Sql = _Sql(conn)

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, args).fetchall()

    def _x(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, args)

    def _xmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if sql.startswith("INSERT") and "VALUES (" in sql:
            _insert_many(self._conn, sql, rows)
        else:
            self._conn.executemany(sql, rows)

    def _in(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        return [(f"{column} IN ({', '.join('?' * len(chunk))})", list(chunk)) for chunk in iter_chunks(values, 500)]

    def lock_traces(self, trace_ids: Sequence[str]) -> None:
        return None  # BEGIN IMMEDIATE already made this the only writer

    def lock_sessions(self, keys: Sequence[Key]) -> None:
        return None

    def insert_spans(self, rows: Sequence[SpanRow], placed: Mapping[tuple[str, str], tuple[str, int]] | None = None
                     ) -> int:
        before = self._conn.total_changes
        get = (placed or {}).get
        _insert_many(self._conn, _INSERT, [(*row_to_tuple(r), *get((r.trace_id, r.span_id), _UNPLACED)) for r in rows])
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

    def upsert_sessions(self, summaries: Sequence[dict[str, Any]]) -> None:
        now = time.time_ns()
        _insert_many(self._conn, _UPSERT_SESSION, [(*_session_values(s), now) for s in summaries])
