"""Conversions between stored rows and records, shared by the stores."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from galtea_otel.records import Session
from galtea_otel.store.turns import SPAN_INDEXES
from galtea_otel.translate.row import COLUMNS, SpanRow

SESSION_COLUMNS: tuple[str, ...] = (
    "custom_id", "version", "status", "error", "test_case_id", "context", "metadata", "started_ns", "ended_ns",
    "last_activity_ns", "turn_count", "input_tokens", "output_tokens", "total_tokens", "cost", "latency_ms",
    "assembly",
    # Schema v5: what a session listing shows and filters on without reading the turns.
    "user_id", "first_input", "last_output", "model", "cache_read_tokens",
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
    return Session(**Session.summary_fields(dict(zip(SESSION_COLUMNS, values, strict=False))))
