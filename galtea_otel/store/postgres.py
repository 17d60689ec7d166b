"""The shared store: PostgreSQL (psycopg 3), for several receiver processes writing into one database.

Same tables, columns and indexes as the SQLite store. What differs is concurrency: SQLite has one writer at
a time, PostgreSQL many, so ``lock_traces`` / ``lock_sessions`` take transaction-scoped advisory locks on a
64-bit hash of each trace id / session key, in the caller's (sorted) order. Every pipeline transaction takes
its trace locks before its session locks, so the lock order is global and writers cannot deadlock on them.
Transactions run at READ COMMITTED: each statement sees what was committed before it, so a writer that waited
for a session lock reads the rows its predecessor committed.

URL: ``postgresql://user:password@host:5432/dbname?options=-csearch_path%3Dmyschema`` (any libpq parameter),
plus ``pool_size=N`` (connections per process, default 8). Tables are created in the first schema of
``search_path``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed

from galtea_otel.evaluate.storage import ensure_tables as ensure_evaluation_tables
from galtea_otel.store import schema as store_schema
from galtea_otel.store import shared
from galtea_otel.store import turns as turns_sql
from galtea_otel.store.base import AnyKey, Key, StoreError, full_key
from galtea_otel.store.dialect import POSTGRES as SQL_DIALECT
from galtea_otel.store.dialect import Sql
from galtea_otel.store.filters import (
    NO_LIMIT,
    POSTGRES,
    POSTGRES_TRIGRAM,
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
    session_from_row,
)
from galtea_otel.store.turns import TurnsTx
from galtea_otel.translate.row import COLUMNS, SpanRow

_INT_COLUMNS = {"start_ns", "end_ns", "input_tokens", "output_tokens", "cache_read_tokens", "total_tokens",
                "received_ns"}
_ARRAY_TYPES = tuple(
    "bigint[]" if c in _INT_COLUMNS else "integer[]" if c == "status" else "float8[]" if c == "cost"
    else "boolean[]" if c in ("abandoned", "key_weak") else "text[]"
    for c in COLUMNS
)
_INSERT = (
    f"INSERT INTO spans ({', '.join((*COLUMNS, *turns_sql.EXTRA_COLUMNS))}) SELECT * FROM unnest("
    + ", ".join(f"%b::{t}" for t in (*_ARRAY_TYPES, "text[]", "integer[]"))
    + ") ON CONFLICT (trace_id, span_id) DO NOTHING"
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM spans"
# What reassembly reads on the write path: no message lists, input and output cut (as in the SQLite store).
_SELECT_NO_CONTENT = "SELECT " + ", ".join(
    f"left({c}, {LISTING_TEXT_CHARS})" if c in ("input", "output") else "NULL" if c in MESSAGE_COLUMNS else c
    for c in COLUMNS) + " FROM spans"
_METADATA_COLUMN = SESSION_COLUMNS.index("metadata")
_SORTED_JSON = json.JSONEncoder(sort_keys=True)  # made once, not per session written


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


_UPSERT_SESSION = _pg(shared.UPSERT_SESSION)


_LOCK_MANY = ("SELECT pg_advisory_xact_lock(k) FROM unnest(%b::bigint[]) WITH ORDINALITY AS t(k, n)"
              " ORDER BY n")
# The migration lock uses the two-key form: a key space of its own, never equal to a trace or session lock.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(1734828641, %s)"  # 1734828641 = b"galt"
_MAX_CHUNK = 5000  # rows per INSERT statement
_DEFAULT_POOL_SIZE = 8
_DEFAULT_CONNECT_TIMEOUT = 10  # seconds; libpq waits forever by default
# The text search over the turns' input and output (``q``, issue 10) reads these pg_trgm GIN indexes (partial: the
# LLM spans it searches) when the store could create them. ``CREATE EXTENSION pg_trgm`` needs a privilege some
# servers do not grant: then the store keeps the plain query (a pass over the spans) and says so once.
TRIGRAM_INDEXES = (("spans_input_trgm", "input"), ("spans_output_trgm", "output"))
log = logging.getLogger("galtea_otel.store")
_trigram_refused_logged = False


class RetryableStoreError(StoreError):
    """A transient database failure (deadlock, serialization failure, lost connection, pool exhausted...).

    The transaction was rolled back (or its outcome is unknown, if the connection broke during COMMIT);
    running the same ingest again is safe, since a replay changes nothing.
    """


_TRACE_NS = 0
_SESSION_NS = 1


def _lock_key(text: str, namespace: int) -> int:
    """A signed 64-bit advisory-lock key: 63 bits of blake2b(text), then one bit naming the namespace, so that
    a trace lock and a session lock are never the same lock."""
    data = text.encode("utf-8", "surrogatepass")
    digest = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
    key = (digest & ~1) | namespace
    return key - (1 << 64) if key >= (1 << 63) else key


def trace_lock_key(trace_id: str) -> int:
    return _lock_key(trace_id, _TRACE_NS)


def session_lock_key(key: Key) -> int:
    # Cleaned as stored (see _params), so that a key read back from the database locks what it was given as.
    scope = "" if key[2] == "default" else f"\0{_clean(key[2])}"
    return _lock_key(f"{_clean(key[0])}\0{_clean(key[1])}{scope}", _SESSION_NS)


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))


# --- URLs and errors ----------------------------------------------------------------------------------------

def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets(url: str) -> list[str]:
    found = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password)]
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "password"]
        raw = [p.partition("=")[2] for p in parts.query.split("&") if p.startswith("password=")]
        found += raw + [unquote(r) for r in raw]
    except ValueError:
        pass
    return [s for s in found if s]


def _split_url(url: str) -> tuple[str, int]:
    """(libpq URL without our own parameters, pool size)."""
    parts = urlsplit(url)
    pool_size = _DEFAULT_POOL_SIZE
    kept = []
    for part in parts.query.split("&") if parts.query else []:
        name, _, value = part.partition("=")
        if name == "pool_size":
            try:
                pool_size = int(value)
            except ValueError:
                raise StoreError(f"pool_size must be a whole number, not {value!r}") from None
            if pool_size < 1:
                raise StoreError(f"pool_size must be at least 1, not {pool_size}")
        else:
            kept.append(part)  # untouched: libpq decodes it
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment)), pool_size


class PostgresStore(shared.SharedStore):
    """A PostgreSQL store shared by any number of processes. Thread-safe: a pool of connections per process.

    ``url`` (the attribute) is the URL with its password masked; the real one is kept private.
    """

    def __init__(self, url: str, *, pool_size: int | None = None, connect_timeout: int | None = None) -> None:
        self.url = redact_url(url)
        self.dialect = SQL_DIALECT
        self._secrets = _secrets(url)
        try:
            conninfo, size = _split_url(url)
            params = conninfo_to_dict(conninfo)
        except (ValueError, psycopg.Error) as exc:
            raise StoreError(f"invalid PostgreSQL URL {self.url}: {self._clean(exc)}") from None
        self._conninfo = conninfo
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._connect_kwargs["connect_timeout"] = connect_timeout or _DEFAULT_CONNECT_TIMEOUT
        self._pool_size = pool_size or size
        self._migrate()
        ensure_evaluation_tables(self)  # issue 11: galtea_otel.evaluate.storage
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._conninfo,
            kwargs=self._connect_kwargs,
            min_size=1,
            max_size=self._pool_size,
            configure=_configure,
            check=ConnectionPool.check_connection,
            open=False,
            timeout=30.0,
            name="galtea-otel",
        )
        self._pool.open(wait=False)
        self._dialect = POSTGRES_TRIGRAM if self._has_trigram_indexes() else POSTGRES

    # --- connections ----------------------------------------------------------------------------------------

    def _clean(self, exc: BaseException) -> str:
        """The error's message, with no password in it."""
        text = str(exc).strip() or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())

    def _error(self, exc: psycopg.Error) -> StoreError:
        message = f"PostgreSQL store {self.url}: {self._clean(exc)}"
        if isinstance(exc, PoolClosed):
            return StoreError(f"PostgreSQL store {self.url} is closed")
        if isinstance(exc, psycopg.OperationalError):
            return RetryableStoreError(f"{message} (transient: retry the request)")
        return StoreError(message)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        with self._translated(), self._pool.connection() as conn:
            yield conn

    def _migrate(self) -> None:
        try:
            conn = psycopg.connect(self._conninfo, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the PostgreSQL store {self.url}: {self._clean(exc)}") from None
        try:
            with conn, conn.transaction():
                schema = conn.execute("SELECT current_schema()").fetchone()
                if schema is None or schema[0] is None:
                    path = conn.execute("SHOW search_path").fetchone()
                    raise StoreError(
                        f"PostgreSQL store {self.url}: no schema of search_path ({path[0] if path else '?'})"
                        " exists; create it first")
                conn.execute(_MIGRATION_LOCK, (_lock_key(schema[0], 0) >> 32,))
                tables = {r[0] for r in conn.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = current_schema() AND c.relname = ANY(%s)", (list(store_schema.TABLES),))}
                if tables and "galtea_meta" not in tables:
                    raise StoreError(
                        f"PostgreSQL store {self.url}: schema {schema[0]!r} already has tables named"
                        f" {', '.join(sorted(tables))} that are not galtea-otel's; use another database or"
                        " schema (URL parameter options=-csearch_path%3Dgaltea)")
                if "galtea_meta" in tables:
                    row = conn.execute(store_schema.VERSION_OF).fetchone()
                    if not store_schema.needs_migration(int(row[0]) if row else 0, f"PostgreSQL store {self.url}"):
                        return
                with conn.cursor() as cur:
                    store_schema.migrate(_Sql(cur), store_schema.Rekey(
                        after=lambda sql, _state: _rekey(sql), extra=[lambda _sql: self._add_trigram_indexes(conn)]))
        except psycopg.Error as exc:
            raise StoreError(f"cannot create the schema in the PostgreSQL store {self.url}:"
                             f" {self._clean(exc)}") from exc
        finally:
            conn.close()

    def _add_trigram_indexes(self, conn: psycopg.Connection[Any]) -> None:
        """Create the pg_trgm extension (unless there) and the text search's indexes, in a savepoint of the
        migration: refused (no privilege, no extension on the server), the migration goes on without them."""
        global _trigram_refused_logged
        try:
            with conn.transaction():
                try:  # in public, so that dropping one store's schema never drops another store's indexes
                    with conn.transaction():
                        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
                except psycopg.Error:  # no public schema, or no right to create in it: the store's own schema
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                found = conn.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n"
                                     " ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'").fetchone()
                opclass = f'"{found[0]}".gin_trgm_ops' if found else "gin_trgm_ops"
                for name, column in TRIGRAM_INDEXES:
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON spans USING gin ({column} {opclass})"
                                 " WHERE kind = 'GENERATION'")
        except psycopg.Error as exc:
            if not _trigram_refused_logged:
                _trigram_refused_logged = True
                log.warning("galtea-otel: PostgreSQL store %s: no pg_trgm index for the text search (%s); the"
                            " search reads the turns' text instead (slower on large stores)", self.url,
                            self._clean(exc))

    def _has_trigram_indexes(self) -> bool:
        with self._conn() as conn:
            row = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
                               " AND indexname = ANY(%s)", ([n for n, _ in TRIGRAM_INDEXES],)).fetchone()
        return bool(row and row[0] == len(TRIGRAM_INDEXES))

    @contextmanager
    def transaction(self) -> Iterator[_PostgresTx]:
        """One READ COMMITTED transaction. Database failures raise ``StoreError``; transient ones (deadlock,
        serialization failure, lost connection, no free connection) ``RetryableStoreError``."""
        with self._conn() as conn, conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as cur:
            yield _PostgresTx(cur, pipeline)

    def close(self) -> None:
        self._pool.close()

    # --- reading --------------------------------------------------------------------------------------------

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn() as conn:
            return conn.execute(sql, _params(args)).fetchall()

    def list_sessions(
        self, *, status: str | None = None, version: str | None = None, limit: int = 50,
        filter: SessionFilter | None = None, after: Cursor | None = None, evaluations: Sequence[str] = (),
    ) -> SessionPage:
        flt = legacy_filter(filter, status, version, evaluations)
        count = limit if limit >= 0 else NO_LIMIT  # SQLite: a negative LIMIT means none
        query = page_query(SESSION_COLUMNS, flt, after, count, self._dialect)
        return run_page(query, count, lambda sql, args: self._all(_pg(sql), args), session_from_row)

    def find_session_key(self, custom_id: str, version: str | None = None, project: str | None = None
                         ) -> Key | None:
        sql, args = "SELECT custom_id, version, project FROM sessions WHERE custom_id = %s", [custom_id]
        if version is not None:
            sql += " AND version = %s"
            args.append(version)
        if project is not None:
            sql += " AND project = %s"
            args.append(project)
        rows = self._all(sql + " ORDER BY started_ns DESC NULLS LAST, version DESC, project LIMIT 1", args)
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def read_session_rows(self, key: AnyKey) -> list[SpanRow]:
        key = full_key(key)
        return [row_from_tuple(r) for r in self._all(
            _SELECT + " WHERE custom_id = %s AND version = %s AND project = %s", key)]

    def read_session_summary(self, key: AnyKey) -> dict[str, Any] | None:
        rows = self._all(_pg(f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE {turns_sql.KEY_EQ}"),
                         full_key(key))
        return dict(zip(SESSION_COLUMNS, rows[0], strict=True)) if rows else None

    def read_turns(self, key: AnyKey) -> list[dict[str, Any]]:
        return turns_sql.records_of(self._all(_pg(turns_sql.READ), full_key(key)))

    def session_assembly(self, key: AnyKey) -> dict[str, Any]:
        key = full_key(key)
        rows = self._all("SELECT assembly FROM sessions WHERE custom_id = %s AND version = %s AND project = %s",
                         key)
        return dict(json.loads(rows[0][0])) if rows else {}

    # --- plain SQL (store.shared, the Galtea outbox, the evaluations) ----------------------------------------

    @contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextmanager
    def write_sql(self) -> Iterator[_Sql]:
        with self._write() as cur:
            yield _Sql(cur)

    def read_sql(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._all(_pg(sql), args)


def _rekey(sql: Sql) -> None:
    """Schema v7 (issue 12): the tables whose primary key gains ``project`` (``store.rows.REKEYED``) get it in
    place (their ``project`` column was just added, the default project for every row). Idempotent: a key that
    already has ``project`` is left alone; inside the migration's transaction."""
    for table, key in REKEYED:
        sql.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS project"
                    f" {store_schema.column_type(SQL_DIALECT, 'project')}")
        found = sql.query(
            "SELECT c.conname, array_agg(a.attname::text) FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
            " WHERE c.conrelid = to_regclass(?) AND c.contype = 'p' GROUP BY c.conname", (table,))
        if found and "project" in found[0][1]:
            continue
        drop = f'DROP CONSTRAINT "{found[0][0]}", ' if found else ""
        sql.execute(f"ALTER TABLE {table} {drop}ADD PRIMARY KEY ({key})")


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.isolation_level = IsolationLevel.READ_COMMITTED


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        try:
            text = "".join(filter(None, value))
        except TypeError:  # numbers: not a text column
            return value
        if "\x00" in text:
            return [_clean(v) for v in value]
    return value


def _params(args: Sequence[Any]) -> tuple[Any, ...]:
    """Query parameters with every NUL character made U+FFFD: PostgreSQL text cannot hold NUL (SQLite's can).

    Applied to every parameter of every query, so a key holding NUL still matches itself, and one odd span
    cannot fail the batch around it."""
    return tuple(_clean(a) for a in args)


class _Sql:
    """Plain SQL on one cursor (``store.dialect.Sql``): ``?`` marks, every value cleaned (``_params``). In pipeline
    mode (the pipeline's transaction), ``executemany`` waits for nothing; ``execute`` waits for its row count."""

    dialect = SQL_DIALECT

    def __init__(self, cur: psycopg.Cursor[Any], pipeline: psycopg.Pipeline | None = None) -> None:
        self._cur = cur
        self._pipeline = pipeline

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._cur.execute(_pg(sql), _params(args))
        if self._pipeline is not None:
            self._pipeline.sync()
        return max(self._cur.rowcount, 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(_pg(sql), [_params(r) for r in rows])

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(_pg(sql), _params(args)).fetchall()


class _PostgresTx(TurnsTx, shared.SharedTx):
    """Statements run in pipeline mode: those whose results are not needed (locks, updates, upserts) are sent
    without waiting, and go to the server together with the next query that returns rows."""

    def __init__(self, cur: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cur = cur
        self._pipeline = pipeline
        self.sql: Sql = _Sql(cur, pipeline)

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._all(_pg(sql), args)

    def _x(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._exec(_pg(sql), args)

    def _xmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(_pg(sql), [_params(r) for r in rows])

    def _in(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        return [(f"{column} = ANY(?::text[])", [list(values)])] if values else []

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(sql, _params(args)).fetchall()

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._cur.execute(sql, _params(args))

    def _lock(self, keys: list[int]) -> None:
        if len(keys) == 1:
            self._exec("SELECT pg_advisory_xact_lock(%s)", keys)
        elif keys:
            self._exec(_LOCK_MANY, (keys,))

    def lock_traces(self, trace_ids: Sequence[str]) -> None:
        self._lock(_unique(trace_lock_key(t) for t in trace_ids))

    def lock_sessions(self, keys: Sequence[Key]) -> None:
        self._lock(_unique(session_lock_key(k) for k in keys))

    def insert_spans(self, rows: Sequence[SpanRow], placed: Mapping[tuple[str, str], tuple[str, int]] | None = None
                     ) -> int:
        inserted = 0
        get = (placed or {}).get
        for start in range(0, len(rows), _MAX_CHUNK):
            chunk = rows[start:start + _MAX_CHUNK]
            extra = [get((r.trace_id, r.span_id)) for r in chunk]
            self._exec(_INSERT, [*([getattr(r, c) for r in chunk] for c in COLUMNS),
                                 [e[0] if e else None for e in extra], [e[1] if e else None for e in extra]])
            self._pipeline.sync()
            inserted += max(self._cur.rowcount, 0)
        return inserted

    def traces_needing_resolution(self, trace_ids: Sequence[str], project: str) -> set[str]:
        if not trace_ids:
            return set()
        return {r[0] for r in self._all(turns_sql.UNRESOLVED.format(
            cond="trace_id = ANY(%b::text[]) AND project = %s", unresolved="", weak=""),
                                        (list(trace_ids), project, list(trace_ids), project))}

    def trace_rows(self, trace_ids: Sequence[str], project: str) -> list[SpanRow]:
        if not trace_ids:
            return []
        return [
            SpanRow(trace_id=r[0], span_id=r[1], parent_span_id=r[2], name="", kind="", start_ns=r[3],
                    end_ns=r[3], status=0, own_custom_id=r[4], own_version=r[5], resource_version=r[6],
                    custom_id=r[7], version=r[8], key_weak=bool(r[9]), project=project)
            for r in self._all(
                "SELECT trace_id, span_id, parent_span_id, start_ns, own_custom_id, own_version,"
                " resource_version, custom_id, version, key_weak FROM spans WHERE trace_id = ANY(%b::text[])"
                " AND project = %s ORDER BY trace_id, span_id", (list(trace_ids), project))
        ]

    def set_keys(self, updates: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        if not updates:
            return
        self._exec(
            "UPDATE spans SET custom_id = u.c, version = u.v"
            " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS u(t, s, c, v)"
            " WHERE spans.trace_id = u.t AND spans.span_id = u.s",
            [list(column) for column in zip(*updates, strict=True)],
        )

    def session_rows(self, keys: Sequence[Key], *, content: bool = True) -> dict[Key, list[SpanRow]]:
        found: dict[Key, list[SpanRow]] = {key: [] for key in keys}
        if not keys:
            return found
        select = _SELECT if content else _SELECT_NO_CONTENT
        custom_ids = sorted({k[0] for k in keys})
        for values in self._all(select + " WHERE custom_id = ANY(%s)", (custom_ids,)):
            row = row_from_tuple(values)
            rows = found.get((row.custom_id, row.version, row.project))  # type: ignore[arg-type]
            if rows is not None:
                rows.append(row)
        return found

    def upsert_sessions(self, summaries: Sequence[dict[str, Any]]) -> None:
        now = time.time_ns()
        for summary in summaries:
            values = [summary[c] for c in SESSION_COLUMNS]
            values[_METADATA_COLUMN] = _SORTED_JSON.encode(summary["metadata"])  # json.dumps(sort_keys=True)
            self._exec(_UPSERT_SESSION, (*values, now))  # pipeline mode: sent together, no round trip each
