"""Conversions between stored rows and records, shared by the stores."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from galtea_otel.records import Session
from galtea_otel.translate.row import COLUMNS, SpanRow

SESSION_COLUMNS: tuple[str, ...] = (
    "custom_id", "version", "status", "error", "test_case_id", "context", "metadata", "started_ns", "ended_ns",
    "last_activity_ns", "turn_count", "input_tokens", "output_tokens", "total_tokens", "cost", "latency_ms",
    "assembly",
)
_ABANDONED = COLUMNS.index("abandoned")


_GET_COLUMNS = operator.attrgetter(*COLUMNS)


def row_to_tuple(row: SpanRow) -> tuple[Any, ...]:
    return _GET_COLUMNS(row)  # type: ignore[no-any-return,unused-ignore]


def row_from_tuple(values: Sequence[Any]) -> SpanRow:
    row = SpanRow(*values)
    row.abandoned = bool(values[_ABANDONED])
    return row


def session_from_row(values: Sequence[Any]) -> Session:
    return Session(**Session.summary_fields(dict(zip(SESSION_COLUMNS, values, strict=False))))


def session_filters(status: str | None, version: str | None, mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause of a session listing (``mark``: the driver's placeholder) and its arguments."""
    where: list[str] = []
    args: list[Any] = []
    if status:
        where.append(f"status = {mark}")
        args.append(status.upper())
    if version:
        where.append(f"version = {mark}")
        args.append(version)
    return (" WHERE " + " AND ".join(where)) if where else "", args
