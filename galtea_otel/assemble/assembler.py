"""Assemble the span rows of one session key into its session record and turns.

This is where a session's ``status`` is decided (``_status``) and where turns are made (``_turns_by_llm_call``,
``_turns_by_trace``). Everything here is a pure function of the *set* of rows: any order, batching or
duplication of the same spans gives the same records (SESSION_MODEL section 4).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from galtea_otel.pricing import CostSource, decide_cost
from galtea_otel.records import InferenceResult, SessionDetail, SpanRecord
from galtea_otel.settings import PipelineSettings
from galtea_otel.translate.row import (
    EVENT_END,
    EVENT_IDLE,
    EVENT_START,
    KIND_LLM,
    KIND_MARKER,
    KIND_SESSION,
    SpanRow,
)


@dataclass
class Turn:
    """A turn before it becomes an ``InferenceResult``: its head span and the spans folded into it."""

    head: SpanRow
    input: str | None
    output: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    total_tokens: int | None
    cost: float | None
    failed: bool
    error: str | None
    members: list[SpanRow] = field(default_factory=list)  # the spans inside the turn, head excluded
    messages: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    cost_source: CostSource | None = None  # galtea_otel.pricing: reported / table / override
    price_version: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.head.end_ns - self.head.start_ns) / 1e6


@dataclass
class Assembly:
    """The outcome for one session key. ``summary`` is what the sessions table keeps."""

    custom_id: str
    version: str
    status: str
    error: str | None
    test_case_id: str | None
    context: str | None
    metadata: dict[str, Any]
    started_ns: int | None
    ended_ns: int | None
    last_activity_ns: int
    turns: list[Turn]
    loose: list[SpanRow]  # spans attached to the session rather than to a turn
    late_ignored: int = 0
    user_id: str | None = None

    def summary(self) -> dict[str, Any]:
        turns = self.turns
        return {
            "custom_id": self.custom_id,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "test_case_id": self.test_case_id,
            "context": self.context,
            "metadata": self.metadata,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "last_activity_ns": self.last_activity_ns,
            "turn_count": len(turns),
            "input_tokens": _sum(t.input_tokens for t in turns),
            "output_tokens": _sum(t.output_tokens for t in turns),
            "total_tokens": _sum(t.total_tokens for t in turns),
            "cost": _fsum(t.cost for t in turns),
            "latency_ms": sum(t.latency_ms for t in turns) if turns else None,
            "user_id": self.user_id,
            "first_input": turns[0].input if turns else None,
            "last_output": turns[-1].output if turns else None,
            "model": next((t.model for t in turns if t.model), None),
            "cache_read_tokens": _sum(t.cache_read_tokens for t in turns),
        }


def _sum(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _fsum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present), 10) if present else None


def _order(row: SpanRow) -> tuple[int, str, str]:
    return (row.start_ns, row.trace_id, row.span_id)


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"metadata": text}
    return value if isinstance(value, dict) else {"metadata": value}


def _ends(sessions: Sequence[SpanRow], markers: Sequence[SpanRow]) -> list[tuple[int, bool, str]]:
    """Every event that ends the session: (time, failed, error), oldest first; ties put failures last."""
    ends = [(row.end_ns, row.is_error, row.error or "") for row in sessions]
    for row in markers:
        if row.session_event == EVENT_END:
            ends.append((row.end_ns, row.is_error, row.error or ""))
        elif row.session_event == EVENT_IDLE:
            ends.append((row.end_ns, False, ""))
    ends.sort()
    return ends


def _status(
    ends: list[tuple[int, bool, str]], activity: Sequence[SpanRow], settings: PipelineSettings
) -> tuple[str, str | None, int | None, list[SpanRow]]:
    """Decide status, error, end time and which late spans to leave out.

    PENDING until something ends the session; then COMPLETED or FAILED from the newest end. Activity that
    *started* after that end reopens the session (``late_spans=reopen``) or is left out (``ignore``/``reject``).
    """
    if not ends:
        return "PENDING", None, None, []
    end_ns, failed, error = ends[-1]
    late = [row for row in activity if row.start_ns > end_ns]
    if late and settings.late_spans == "reopen":
        return "PENDING", None, None, []
    return ("FAILED" if failed else "COMPLETED"), (error or None) if failed else None, end_ns, late


class _Tree:
    """Parent links of the rows of one session (parents are looked up within the same trace)."""

    def __init__(self, rows: Sequence[SpanRow]) -> None:
        self.by_id = {(r.trace_id, r.span_id): r for r in rows}

    def parent(self, row: SpanRow) -> SpanRow | None:
        if row.parent_span_id is None:
            return None
        return self.by_id.get((row.trace_id, row.parent_span_id))

    def outermost_llm(self, row: SpanRow) -> SpanRow | None:
        """The outermost LLM span enclosing ``row`` (itself included), or None."""
        found = row if row.kind == KIND_LLM else None
        seen = {row.span_id}
        current = self.parent(row)
        while current is not None and current.span_id not in seen:
            seen.add(current.span_id)
            if current.kind == KIND_LLM:
                found = current
            current = self.parent(current)
        return found


def _fold(head: SpanRow, inner: Sequence[SpanRow], members: list[SpanRow]) -> Turn:
    """The head gives input/output; inner LLM spans fill what it lacks (model; tokens and cost, summed)."""

    def fill_int(own: int | None, attr: str) -> int | None:
        return own if own is not None else _sum(getattr(r, attr) for r in inner)

    model = head.model or next((r.model for r in inner if r.model), None)
    return Turn(
        head=head,
        input=head.input if head.input is not None else next((r.input for r in inner if r.input), None),
        output=head.output if head.output is not None else next(
            (r.output for r in reversed(inner) if r.output), None),
        model=model,
        input_tokens=fill_int(head.input_tokens, "input_tokens"),
        output_tokens=fill_int(head.output_tokens, "output_tokens"),
        cache_read_tokens=fill_int(head.cache_read_tokens, "cache_read_tokens"),
        total_tokens=fill_int(head.total_tokens, "total_tokens"),
        cost=head.cost if head.cost is not None else _fsum(r.cost for r in inner),
        failed=head.is_error,
        error=head.error if head.is_error else None,
        members=members,
    )


def _turns_by_llm_call(work: Sequence[SpanRow]) -> tuple[list[Turn], list[SpanRow]]:
    tree = _Tree(work)
    heads: dict[tuple[str, str], list[SpanRow]] = {}
    loose: list[SpanRow] = []
    for row in work:
        outer = tree.outermost_llm(row)
        if outer is None:
            loose.append(row)
        elif outer is not row:
            heads.setdefault((outer.trace_id, outer.span_id), []).append(row)
        else:
            heads.setdefault((row.trace_id, row.span_id), [])
    turns = []
    for key, members in heads.items():
        head = tree.by_id[key]
        inner = [r for r in members if r.kind == KIND_LLM]
        turns.append(_fold(head, inner, members))
    return turns, loose


def _turns_by_trace(work: Sequence[SpanRow]) -> tuple[list[Turn], list[SpanRow]]:
    by_trace: dict[str, list[SpanRow]] = {}
    for row in work:
        by_trace.setdefault(row.trace_id, []).append(row)
    turns: list[Turn] = []
    loose: list[SpanRow] = []
    for rows in by_trace.values():
        tree = _Tree(rows)
        root = next((r for r in rows if tree.parent(r) is None), rows[0])  # rows are in start order
        outer = [r for r in rows if r.kind == KIND_LLM and tree.outermost_llm(r) is r]
        if not outer and root.input is None and root.output is None:
            loose.extend(rows)
            continue
        members = [r for r in rows if r is not root]
        folded = [_fold(r, [m for m in rows if m is not r and m.kind == KIND_LLM
                            and tree.outermost_llm(m) is r], []) for r in outer]
        failed = root.is_error or any(t.failed for t in folded)
        error = root.error if root.is_error else next((t.error for t in folded if t.failed), None)
        turns.append(Turn(
            head=root,
            input=root.input if root.input is not None else next((t.input for t in folded if t.input), None),
            output=root.output if root.output is not None else next(
                (t.output for t in reversed(folded) if t.output), None),
            model=root.model or next((t.model for t in folded if t.model), None),
            input_tokens=root.input_tokens if not folded else _sum(t.input_tokens for t in folded),
            output_tokens=root.output_tokens if not folded else _sum(t.output_tokens for t in folded),
            cache_read_tokens=root.cache_read_tokens if not folded else _sum(t.cache_read_tokens for t in folded),
            total_tokens=root.total_tokens if not folded else _sum(t.total_tokens for t in folded),
            cost=root.cost if not folded else _fsum(t.cost for t in folded),
            failed=failed,
            error=error,
            members=members,
        ))
    return turns, loose


def assemble(
    rows: Sequence[SpanRow],
    custom_id: str,
    version: str,
    settings: PipelineSettings,
    test_case_context: str | None = None,
) -> Assembly | None:
    """Build the session (custom_id, version) from all its rows; None when there are none."""
    if not rows:
        return None
    ordered = sorted(rows, key=_order)
    sessions = [r for r in ordered if r.kind == KIND_SESSION]
    markers = [r for r in ordered if r.kind == KIND_MARKER]
    work = [r for r in ordered if r.kind not in (KIND_SESSION, KIND_MARKER)]
    starts = [r for r in markers if r.session_event == EVENT_START]
    status, error, ended_ns, late = _status(_ends(sessions, markers), work + starts, settings)
    if late:
        dropped = {(r.trace_id, r.span_id) for r in late}
        work = [r for r in work if (r.trace_id, r.span_id) not in dropped]
    turns, loose = (_turns_by_trace if settings.turns == "trace" else _turns_by_llm_call)(work)
    turns.sort(key=lambda t: _order(t.head))
    for t in turns:  # galtea_otel.pricing: a reported cost, else the price file, else the bundled table
        t.cost, t.cost_source, t.price_version = decide_cost(
            t.cost, t.model, t.input_tokens, t.output_tokens, t.cache_read_tokens, t.head.start_ns)
    if settings.strict and status != "PENDING":
        failed_turn = next((i for i, t in enumerate(turns) if t.failed), None)
        if failed_turn is not None and status == "COMPLETED":
            status, error = "FAILED", f"turn {failed_turn} failed: {turns[failed_turn].error}"
    # Session attributes: the newest session span, else the newest start marker, else any span that has them.
    described = list(reversed(sessions)) + list(reversed(starts)) + ordered
    test_case_id = next((r.test_case_id for r in described if r.test_case_id), None)
    context = next((r.context for r in described if r.context), None) or test_case_context
    head = sessions[-1] if sessions else (starts[-1] if starts else None)
    return Assembly(
        custom_id=custom_id,
        version=version,
        status=status,
        error=error,
        test_case_id=test_case_id,
        context=context,
        metadata=_json_object(head.metadata) if head is not None else {},
        started_ns=ordered[0].start_ns,
        ended_ns=ended_ns,
        last_activity_ns=max(r.end_ns for r in ordered),
        turns=turns,
        loose=loose,
        late_ignored=len(late),
        user_id=next((r.user_id for r in described if r.user_id), None),
    )


# --- Records for readers -------------------------------------------------------------------------------------------

def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def _span_tree(rows: Sequence[SpanRow]) -> list[SpanRecord]:
    ids = {(r.trace_id, r.span_id) for r in rows}
    children: dict[tuple[str, str] | None, list[SpanRow]] = {}
    for row in sorted(rows, key=_order):
        parent = (row.trace_id, row.parent_span_id) if row.parent_span_id else None
        children.setdefault(parent if parent in ids else None, []).append(row)

    def build(row: SpanRow) -> SpanRecord:
        return SpanRecord(
            id=row.span_id,
            trace_id=row.trace_id,
            parent_id=row.parent_span_id,
            name=row.name,
            type=row.kind,
            input=row.input,
            output=row.output,
            status="ERROR" if row.is_error else "OK",
            error=row.error,
            started_at=_dt(row.start_ns),
            ended_at=_dt(row.end_ns),
            latency_ms=(row.end_ns - row.start_ns) / 1e6,
            metadata=_json_object(row.metadata),
            children=[build(c) for c in children.get((row.trace_id, row.span_id), [])],
        )

    return [build(r) for r in children.get(None, [])]


def to_detail(assembly: Assembly) -> SessionDetail:
    """The full record: the session, its inference results in order, and the spans outside any turn."""
    summary = assembly.summary()
    results = [
        InferenceResult(
            id=t.head.span_id,
            trace_id=t.head.trace_id,
            index=index,
            input=t.input,
            output=t.output,
            model=t.model,
            status="FAILED" if t.failed else "GENERATED",
            error=t.error,
            started_at=_dt(t.head.start_ns),
            ended_at=_dt(t.head.end_ns),
            latency_ms=t.latency_ms,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            cache_read_input_tokens=t.cache_read_tokens,
            total_tokens=t.total_tokens,
            cost=t.cost,
            cost_source=t.cost_source,
            price_version=t.price_version,
            abandoned=t.head.abandoned,
            messages=t.messages,
            finish_reason=t.finish_reason,
            metadata=_json_object(t.head.metadata),
            spans=_span_tree(t.members),
        )
        for index, t in enumerate(assembly.turns)
    ]
    return SessionDetail(
        **SessionDetail.summary_fields(summary),
        inference_results=results,
        spans=_span_tree(assembly.loose),
    )
