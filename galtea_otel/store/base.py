"""The store interface: what the pipeline needs from a database, in small primitives.

The pipeline (``galtea_otel.pipeline``) holds all the logic; a store only runs these primitives inside one
transaction. Adding a database means implementing ``Store`` and ``StoreTx``; the translator and assembler do not
change. Both SQLite and PostgreSQL implement it.

Modules that keep tables of their own in the store (the Galtea outbox, ``galtea_otel.sync.outbox``; the
evaluations) are not part of this interface: they run SQL written once through ``SqlStore`` (a store's short
transactions) and ``StoreTx.sql`` (the pipeline's), with the store's ``Dialect`` (``store.dialect``). The
tables of every module and their migrations are in ``store.schema``.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from galtea_otel.store.dialect import Dialect, Sql
from galtea_otel.store.filters import Cursor, SessionFilter, SessionPage
from galtea_otel.translate.row import DEFAULT_PROJECT, SpanRow

# (custom_id, version, project): the project last, so that ``key[0]`` / ``key[1]`` keep their meaning.
Key = tuple[str, str, str]
# What the reading and sync methods take: a Key, or (custom_id, version) as before schema v7, meaning the default
# project's session (so a single-project caller's code keeps working).
AnyKey = tuple[str, ...]


def full_key(key: AnyKey) -> Key:
    """A Key from a Key or a (custom_id, version) pair (the default project)."""
    return (key[0], key[1], key[2] if len(key) > 2 else DEFAULT_PROJECT)


if TYPE_CHECKING:  # the records (pydantic) are imported where one is made, not to open a store
    from galtea_otel.records import TestCase

# 2: the Galtea sync outbox (galtea_outbox, galtea_sync_sessions, galtea_sync_turns);
# 3: galtea_sync_turns.fingerprint (a turn changed after it was sent is updated on the platform);
# 4: galtea_sync_intents (the body of a turn creation, recorded before it is sent);
# 5: the content model and end user on spans, listing columns on sessions (``store.rows.ADDED_COLUMNS``);
# 6: stored turns (``store.turns``) and ``sessions.agg``, for incremental assembly; a v5 session's turns are
#    materialized the first time a batch touches it (until then it is read by reassembling, as before);
# 7: projects (issue 12): a ``project`` column on spans and on every table keyed by session, in that key
# (``store.rows.REKEYED``; SQLite rebuilds those tables in place, PostgreSQL swaps their primary key).
# 8: 6 and 7 together (both were written beside each other; 8 makes every store of 6 or 7 migrate to both), and
#    the pg_trgm text-search indexes of PostgreSQL.
# 9: a turn's input and output in columns of their own (``store.turns.TEXT_COLUMNS``), out of its JSON; the turns
#    written before keep them in it.
# 10: the fields a turn's columns hold (``store.turns.COLUMN_FIELDS``) out of its JSON too; no table changes, the
#    version tells an earlier release, which would look for them in the JSON, that it cannot read this store.
SCHEMA_VERSION = 10


class StoreError(RuntimeError):
    """The store cannot be opened or used (wrong scheme, corrupt or foreign file, newer schema...)."""


class StoreTx(Protocol):
    """One write transaction. Every method runs inside it; it commits when the ``with`` block ends cleanly."""

    def lock_traces(self, trace_ids: Sequence[str]) -> None:
        """Serialize writers that touch the same traces (sorted ids; a no-op where there is one writer)."""

    def insert_spans(self, rows: Sequence[SpanRow], placed: Mapping[tuple[str, str], tuple[str, int]] | None = None
                     ) -> int:
        """Insert the rows not stored yet (by trace_id, span_id), ignore the others; return how many were new.
        ``placed``: the (root_id, flags) some of them are stored with (the others get NULL, as set_roots would
        find them), by (trace_id, span_id)."""

    def traces_needing_resolution(self, trace_ids: Sequence[str], project: str) -> set[str]:
        """Of these traces, those holding a row of ``project`` that lacks its own custom id or version."""

    def trace_rows(self, trace_ids: Sequence[str], project: str) -> list[SpanRow]:
        """The rows of ``project`` in these traces, with at least ids, parent, start, key columns and project
        filled."""

    def set_keys(self, updates: Sequence[tuple[str, str, str | None, str | None]]) -> None:
        """Set the resolved (custom_id, version) of rows given as (trace_id, span_id, custom_id, version)."""

    def lock_sessions(self, keys: Sequence[Key]) -> None:
        """Serialize writers that reassemble the same sessions (sorted keys)."""

    def session_rows(self, keys: Sequence[Key], *, content: bool = True) -> dict[Key, list[SpanRow]]:
        """All rows resolved to each of these session keys (one query, not one per session); with
        ``content=False`` input and output are left None. Every key is in the result, maybe with no rows."""

    def test_case_context(self, test_case_id: str) -> str | None: ...

    # Schema v6, incremental assembly (shared by both stores: ``store.turns.TurnsTx``).
    def session_states(self, keys: Sequence[Key]) -> dict[Key, tuple[str | None, str, str | None, str | None]]:
        """(agg, assembly, first_input, last_output) of the stored sessions among these keys."""

    def session_events(self, keys: Sequence[Key], columns: Sequence[str]) -> dict[Key, list[tuple[Any, ...]]]:
        """The session spans and markers of these sessions (a few rows each), as tuples of ``columns``."""

    def pair_rows(self, pairs: Sequence[tuple[Key, str]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The rows of these (session key, trace id) pairs, as tuples of ``columns``."""

    def trace_context(self, trace_id: str, span_ids: Sequence[str], parent_ids: Sequence[str],
                      columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows of one trace with these span ids or parent ids, and the children of ``span_ids``."""

    def component_rows(self, key: Key, trace_id: str, roots: Sequence[str], columns: Sequence[str]
                       ) -> list[tuple[Any, ...]]:
        """The session's rows in this trace whose ``root_id`` is one of ``roots``."""

    def trace_has(self, key: Key, trace_id: str, what: str, exclude: Sequence[str] = ()) -> bool:
        """Whether the session's part of the trace has ``agents`` or ``continuing`` LLM calls (not in exclude)."""

    def set_roots(self, updates: Sequence[tuple[str | None, int, str, str]]) -> None:
        """Set (root_id, flags) of span rows given as (root_id, flags, trace_id, span_id)."""

    def merge_roots(self, key: Key, trace_id: str, merges: Sequence[tuple[str, str]]) -> None:
        """Move the session's spans of each component (new root, old root) of this trace to the new root."""

    def turn_contribs(self, key: Key, trace_id: str, roots: Sequence[str] | None) -> list[tuple[Any, ...]]:
        """The aggregate columns of the session's stored turns in this trace (of these components)."""

    def replace_turns(self, key: Key, trace_id: str | None, roots: Sequence[str] | None,
                      records: Sequence[dict[str, Any]]) -> None:
        """Drop the session's stored turns (of a trace, of components of it), then store ``records``."""

    def trace_contexts(self, requests: Sequence[tuple[str, Sequence[str], Sequence[str]]], columns: Sequence[str],
                       known: Container[tuple[str, str]] = ()) -> list[list[tuple[Any, ...]]]:
        """``trace_context`` of each (trace id, span ids, parent ids), all in a few statements; the rows of the
        (trace id, span id) pairs in ``known`` (the caller has those) are neither read nor returned, children
        included."""

    def continuing(self, pairs: Sequence[tuple[Key, str]]) -> set[tuple[Key, str]]:
        """The (session key, trace id) pairs whose part of the trace has an LLM call that continues a turn."""

    def insert_turns(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Store new turns of several sessions at once, each row the ``store.turns.turn_values`` of its session
        key and turn record."""

    def turn_facts(self, key: Key, first_failed: bool) -> dict[str, Any]:
        """First and last turn, first model, first failed turn (index lookups on the stored turns)."""

    def upsert_sessions(self, summaries: Sequence[dict[str, Any]]) -> None:
        """Write the sessions' summary rows (``Assembly.summary()``)."""

    def delete_session(self, key: Key) -> None: ...

    def idle_sessions(self, last_activity_before_ns: int) -> list[Key]:
        """PENDING sessions with no activity since the given time."""

    def held_traces(self, received_before_ns: int) -> list[tuple[str, str]]:
        """(project, trace id) of the traces with rows still unkeyed, the newest of which arrived before the
        given time."""

    def sweep_marks(self) -> tuple[int | None, int | None]:
        """What a sweep waits for (``galtea_otel.pipeline.next_sweep_ns``): the oldest last activity among the
        PENDING sessions, and the oldest newest-arrival among the traces whose rows are held for a key (each
        None when there is none)."""

    def unkeyed_rows(self, trace_id: str, project: str) -> list[SpanRow]: ...

    def delete_unkeyed(self, trace_id: str, project: str) -> int:
        """Drop a held trace's unkeyed rows; return how many."""

    def add_counter(self, name: str, amount: int) -> None: ...

    # Plain SQL in this transaction, for the modules with tables of their own (the Galtea outbox's
    # ``enqueue``: its row commits with the records it announces).
    sql: Sql


class SqlStore(Protocol):
    """Plain SQL on a store (``?`` marks, written once: ``dialect`` says what differs)."""

    dialect: Dialect

    def write_sql(self) -> AbstractContextManager[Sql]:
        """One short write transaction of its own (committed when the ``with`` block ends cleanly)."""

    def read_sql(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One query, outside any transaction (what was committed before it)."""


class Store(SqlStore, Protocol):
    url: str

    def transaction(self) -> AbstractContextManager[StoreTx]: ...

    # Reading.
    def list_sessions(
        self, *, status: str | None = None, version: str | None = None, limit: int = 50,
        filter: SessionFilter | None = None, after: Cursor | None = None, evaluations: Sequence[str] = (),
    ) -> SessionPage:
        """Newest first (started_ns DESC, custom_id, version): the page after ``after`` of the sessions that
        ``filter`` keeps (``status`` / ``version`` are shorthands for its fields); see ``store.filters``;
        ``evaluations``: conditions such as ``helpfulness<0.5`` (galtea_otel.evaluate.storage)."""

    def find_session_key(self, custom_id: str, version: str | None = None, project: str | None = None
                         ) -> Key | None:
        """The key of the session with this custom id (the newest one when version is None; in any project when
        project is None)."""

    def read_session_rows(self, key: AnyKey) -> list[SpanRow]: ...

    def read_session_summary(self, key: AnyKey) -> dict[str, Any] | None:
        """The stored sessions row (``store.rows.SESSION_COLUMNS``) of this key, None when there is none."""

    def read_turns(self, key: AnyKey) -> list[dict[str, Any]]:
        """The stored turn records of a session (``assemble.assembler.turn_record``), in conversation order."""

    def session_assembly(self, key: AnyKey) -> dict[str, Any]:
        """The assembly settings (turns, late_spans, strict) the session was last written with."""

    def counters(self) -> dict[str, int]: ...

    # Test cases.
    def put_test_cases(self, cases: Iterable[TestCase]) -> int: ...

    def get_test_case(self, test_case_id: str) -> TestCase | None: ...

    def list_test_cases(self) -> list[TestCase]: ...

    def close(self) -> None: ...


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``, each as long as a power of two (300 items of at most
    256: 256, 32, 8 and 4). A statement is written for its chunk's length, so its text is one of a few, prepared
    once and then found in the connection's statement cache: a text of a new length every batch (the rest of a
    chunking by ``size``) was parsed and planned anew, which for a multi-row INSERT costs about ten times what
    running it does (BENCHMARKS.md, stop 18)."""
    most = 1 << (max(1, size).bit_length() - 1)
    start, count = 0, len(items)
    while start < count:
        length = min(most, 1 << ((count - start).bit_length() - 1))
        yield items[start:start + length]
        start += length
