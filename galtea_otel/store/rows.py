"""Conversions between stored rows and records, shared by the stores."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from datetime import datetime, timezone
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


def _dt(ns: int | None) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc) if ns is not None else None


def session_from_row(values: Sequence[Any]) -> Session:
    r = dict(zip(SESSION_COLUMNS, values, strict=False))
    metadata = r["metadata"]
    return Session(
        custom_id=r["custom_id"],
        version=r["version"],
        test_case_id=r["test_case_id"],
        context=r["context"],
        metadata=json.loads(metadata) if isinstance(metadata, str) else (metadata or {}),
        status=r["status"],
        error=r["error"],
        started_at=_dt(r["started_ns"]),
        ended_at=_dt(r["ended_ns"]),
        turn_count=r["turn_count"],
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        total_tokens=r["total_tokens"],
        cost=r["cost"],
        latency_ms=r["latency_ms"],
    )
