"""Conversions between stored rows and records, shared by the stores."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from galtea_otel.store.turns import SPAN_INDEXES
from galtea_otel.translate.row import COLUMNS, SpanRow

if TYPE_CHECKING:
    from galtea_otel.records import Session

SESSION_COLUMNS: tuple[str, ...] = (
    "custom_id", "version", "status", "error", "test_case_id", "context", "metadata", "started_ns", "ended_ns",
    "last_activity_ns", "turn_count", "input_tokens", "output_tokens", "total_tokens", "cost", "latency_ms",
    "assembly",
    # Schema v5: what a session listing shows and filters on without reading the turns.
    "user_id", "first_input", "last_output", "model", "cache_read_tokens",
    # Schema v7 (issue 12): the project, the third part of the session key.
    "project",
    # Schema v6: the exact aggregates incremental assembly keeps (JSON; NULL: turns not materialized yet).
    "agg",
)
_ABANDONED = COLUMNS.index("abandoned")
# The write path reads input and output cut to this many characters (enough for a listing's first message and
# last reply), and no message lists.
LISTING_TEXT_CHARS = 500
MESSAGE_COLUMNS = ("input_messages", "output_messages")
_KEY_WEAK = COLUMNS.index("key_weak")

# Columns added to the spans and sessions tables after their first release, as (table, column, logical type:
# text / int / float / bool); a store of an older schema gets them by ALTER TABLE ... ADD COLUMN when it is
# opened (a new store's CREATE TABLE already has them). Each store maps the logical type to its own.
# v5: the content model and the end user (issue 8), the listing columns of sessions.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("spans", "user_id", "text"),
    ("spans", "key_weak", "bool"),
    ("spans", "input_messages", "text"),
    ("spans", "output_messages", "text"),
    ("spans", "finish_reason", "text"),
    ("sessions", "user_id", "text"),
    ("sessions", "first_input", "text"),
    ("sessions", "last_output", "text"),
    ("sessions", "model", "text"),
    ("sessions", "cache_read_tokens", "int"),
    # Issue 11: a span's evaluation events (galtea_otel.evaluate.events); the evaluations tables are created by
    # galtea_otel.evaluate.storage.ensure_tables.
    ("spans", "evaluations", "text"),
    # v6: incremental assembly (the turns table: ``store.turns``).
    ("sessions", "agg", "text"),
    ("spans", "root_id", "text"),
    ("spans", "flags", "int"),
    # v7 (issue 12): the project; every row of an older store is the default project's.
    # (The tables keyed by session get theirs with their new key: ``REKEYED``.)
    ("spans", "project", "project"),
    ("evaluations", "project", "project"),
    # v9: a turn's texts out of its JSON (``store.turns.TEXT_COLUMNS``).
    ("turns", "input", "text"),
    ("turns", "output", "text"),
)
# The logical type of a project column: the default project for the rows already there.
PROJECT_COLUMN_SQL = "TEXT NOT NULL DEFAULT 'default'"
# Schema v7 (issue 12): the tables whose primary key gains ``project``, as (table, new key). A store of an older
# schema has them rebuilt (SQLite) or re-keyed (PostgreSQL) in place, in the opening transaction. ``spans``
# keeps its (trace_id, span_id) key: ids are random, and a span another project sends with a stored span's ids
# is ignored as a duplicate (counted), never merged into that project.
REKEYED: tuple[tuple[str, str], ...] = (
    ("sessions", "custom_id, version, project"),
    ("galtea_outbox", "custom_id, version, project"),
    ("galtea_sync_sessions", "custom_id, version, project"),
    ("galtea_sync_turns", "custom_id, version, project, turn_id"),
    ("galtea_sync_intents", "custom_id, version, project, turn_id"),
    ("evaluation_queue", "custom_id, version, project"),
)
# Indexes on added columns: created after the columns exist (so also on a migrated store).
# The session listing (``store.filters``): keyset pages in its order (started_ns DESC, custom_id, version), alone
# or after an equality on status, version or user, each page read from an index range, never a full scan.
ADDED_INDEXES: tuple[tuple[str, str, str], ...] = (
    ("sessions_by_user", "sessions", "user_id"),
    ("sessions_by_start_key", "sessions", "started_ns DESC, custom_id, version"),
    ("sessions_by_status_start", "sessions", "status, started_ns DESC, custom_id, version"),
    ("sessions_by_version_start", "sessions", "version, started_ns DESC, custom_id, version"),
    ("sessions_by_user_start", "sessions", "user_id, started_ns DESC, custom_id, version"),
    # v7: a project's listing, and its spans by session.
    ("sessions_by_project_start", "sessions", "project, started_ns DESC, custom_id, version"),
    *SPAN_INDEXES,  # v6: incremental assembly's lookups (store.turns)
)


_GET_COLUMNS = operator.attrgetter(*COLUMNS)


def row_to_tuple(row: SpanRow) -> tuple[Any, ...]:
    return _GET_COLUMNS(row)  # type: ignore[no-any-return,unused-ignore]


def row_from_tuple(values: Sequence[Any]) -> SpanRow:
    row = SpanRow(*values)
    row.abandoned = bool(values[_ABANDONED])
    row.key_weak = bool(values[_KEY_WEAK])
    return row


def session_from_row(values: Sequence[Any]) -> Session:
    from galtea_otel.records import Session  # on first use: opening a store does not import pydantic

    return Session(**Session.summary_fields(dict(zip(SESSION_COLUMNS, values, strict=False))))
