"""Assemble the span rows of one session key into its session record and turns.

This is where a session's ``status`` is decided (``_status``) and where turns are made (``_turns_by_head``: one
turn per user turn, or per LLM call; ``_turns_by_trace``; a turn's record from its own spans: ``build_turn``).
Everything here is a pure function of the *set* of rows: any order, batching or duplication of the same spans
gives the same records (SESSION_MODEL section 4).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
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
    abandoned: bool = False
    end_ns: int | None = None  # a continued turn (LLM -> tool -> LLM) ends with its last call, not its head

    @property
    def latency_ns(self) -> int:
        return (self.end_ns if self.end_ns is not None else self.head.end_ns) - self.head.start_ns

    @property
    def latency_ms(self) -> float:
        return self.latency_ns / 1e6


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
            "latency_ms": latency_total(sum(t.latency_ns for t in turns)) if turns else None,
            "user_id": self.user_id,
            "first_input": turns[0].input if turns else None,
            "last_output": turns[-1].output if turns else None,
            "model": next((t.model for t in turns if t.model), None),
            "cache_read_tokens": _sum(t.cache_read_tokens for t in turns),
        }


def latency_total(latency_ns: int) -> float:
    """A session's ``latency_ms`` from the exact sum of its turns' latencies in nanoseconds."""
    return round(latency_ns / 1e6, 6)


def _sum(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def round_cost(value: float) -> float:
    """A sum of costs without float noise (``3.0000000000000004e-05`` -> ``3e-05``): 12 significant digits."""
    return float(f"{value:.12g}")


def _fsum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round_cost(float(sum((Fraction(v) for v in present), Fraction(0)))) if present else None


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


# Kinds that can head a user turn besides LLM spans (the translator maps invoke_agent, OpenInference AGENT /
# CHAIN, traceloop workflow / task, Vercel ``ai.generateText`` ... to these).
KIND_AGENT = "AGENT"
KIND_CHAIN = "CHAIN"
HEAD_KINDS = frozenset({KIND_AGENT, KIND_CHAIN, KIND_LLM})
Id = tuple[str, str]


def order_key(row: SpanRow) -> tuple[int, int, str, str]:
    """Conversation order: start time, then end time (the JS SDK's millisecond clocks tie often: of two spans
    that started in the same millisecond, the one that ended first came first), then ids."""
    return (row.start_ns, row.end_ns, row.trace_id, row.span_id)


_LLM_ONLY = frozenset({KIND_LLM})


def head_kinds(mode: str) -> frozenset[str]:
    """The kinds of span that may head a turn in this turn mode (``user``: agents, chains and LLM spans;
    ``llm-call``: LLM spans)."""
    return _LLM_ONLY if mode == "llm-call" else HEAD_KINDS


class _Tree:
    """Parent links of the rows of one session (parents are looked up within the same trace)."""

    def __init__(self, rows: Sequence[SpanRow]) -> None:
        self.by_id = {(r.trace_id, r.span_id): r for r in rows}

    def parent(self, row: SpanRow) -> SpanRow | None:
        if row.parent_span_id is None:
            return None
        return self.by_id.get((row.trace_id, row.parent_span_id))

    def outermost(self, row: SpanRow, accept: Callable[[SpanRow], bool]) -> SpanRow | None:
        """The outermost span enclosing ``row`` (itself included) that ``accept`` takes, or None."""
        found = row if accept(row) else None
        seen = {row.span_id}
        current = self.parent(row)
        while current is not None and current.span_id not in seen:
            seen.add(current.span_id)
            if accept(current):
                found = current
            current = self.parent(current)
        return found

    def outermost_llm(self, row: SpanRow) -> SpanRow | None:
        return self.outermost(row, lambda r: r.kind == KIND_LLM)


@dataclass
class _Call:
    """One distinct LLM call: its outermost LLM span, with what nested LLM spans of the same call fill in."""

    row: SpanRow
    input: str | None
    output: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    total_tokens: int | None
    cost: float | None
    input_messages: str | None
    output_messages: str | None
    finish_reason: str | None


_OWN = object()


def _own_or(own: Any, other: Any, otherwise: Any = _OWN) -> Any:
    """``_fold_call``'s fill() with one nested call: the span's own value, else the call's; else ``otherwise``
    (the span's own by default; None for a figure: the sum of nothing)."""
    if own is not None and own != "":
        return own
    if otherwise is _OWN:
        return other if other is not None and other != "" else own
    return other


def _fold_call(row: SpanRow, nested: dict[Id, list[SpanRow]]) -> _Call:
    """An LLM span's own values win; what it lacks comes from its nearest nested LLM spans: figures summed over
    them (two client calls inside one decorated wrapper), never added to the span's own (LlamaIndex's three
    nested spans of one call count once); texts from the first (input) or last (output) that has them."""
    below = nested.get((row.trace_id, row.span_id))
    if not below:  # the common case: nothing nested, the call is the span's own values (what fill() gives)
        return _Call(row, row.input, row.output, row.model, row.input_tokens, row.output_tokens,
                     row.cache_read_tokens, row.total_tokens, row.cost, row.input_messages, row.output_messages,
                     row.finish_reason)
    inner = [_fold_call(r, nested) for r in below]
    if len(inner) == 1:  # one call nested in a wrapper (a decorated function around a client call): fill() below
        c = inner[0]
        return _Call(
            row=row,
            input=_own_or(row.input, c.input),
            output=_own_or(row.output, c.output),
            model=_own_or(row.model, c.model),
            input_tokens=_own_or(row.input_tokens, c.input_tokens, None),
            output_tokens=_own_or(row.output_tokens, c.output_tokens, None),
            cache_read_tokens=_own_or(row.cache_read_tokens, c.cache_read_tokens, None),
            total_tokens=_own_or(row.total_tokens, c.total_tokens, None),
            cost=_own_or(row.cost, None if c.cost is None else round_cost(float(c.cost)), None),
            input_messages=_own_or(row.input_messages, c.input_messages),
            output_messages=_own_or(row.output_messages, c.output_messages),
            finish_reason=_own_or(row.finish_reason, c.finish_reason),
        )

    def fill(own: Any, attr: str, *, add: bool = False, last: bool = False) -> Any:
        if own is not None and own != "":
            return own
        if add:
            return (_fsum if attr == "cost" else _sum)(getattr(c, attr) for c in inner)
        for call in reversed(inner) if last else inner:
            value = getattr(call, attr)
            if value is not None and value != "":
                return value
        return own

    return _Call(
        row=row,
        input=fill(row.input, "input"),
        output=fill(row.output, "output", last=True),
        model=fill(row.model, "model"),
        input_tokens=fill(row.input_tokens, "input_tokens", add=True),
        output_tokens=fill(row.output_tokens, "output_tokens", add=True),
        cache_read_tokens=fill(row.cache_read_tokens, "cache_read_tokens", add=True),
        total_tokens=fill(row.total_tokens, "total_tokens", add=True),
        cost=fill(row.cost, "cost", add=True),
        input_messages=fill(row.input_messages, "input_messages", last=True),
        output_messages=fill(row.output_messages, "output_messages", last=True),
        finish_reason=fill(row.finish_reason, "finish_reason", last=True),
    )


def _messages(*texts: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for text in texts:
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, list):
            out.extend(m for m in value if isinstance(m, dict))
    return out


def build_turn(head: SpanRow, members: Sequence[SpanRow], *, require_call: bool = True) -> Turn | None:
    """The turn headed by ``head`` from the spans inside it (``members``, head excluded; any order).

    Its distinct LLM calls are the outermost LLM spans inside it (the head itself when it is one). Tokens and
    cost: summed over the calls (the head's own only when no call reports them); ``input``: the head's, else
    the first call's; ``output``: the head's, else the last call's non-empty one; ``messages`` and
    ``finish_reason``: the last call's; failed when the head failed, else when the last call did. An agent or
    chain head with no LLM call and no input or output of its own makes no turn (None): its spans are the
    session's. ``require_call=False`` keeps it anyway.
    """
    rows = [head, *members]
    tree = _Tree(rows)
    nested: dict[Id, list[SpanRow]] = {}
    calls_rows: list[SpanRow] = []
    for row in sorted(rows, key=order_key):
        if row.kind != KIND_LLM:
            continue
        parent = tree.parent(row)
        enclosing = None
        seen = {row.span_id}
        while parent is not None and parent.span_id not in seen:
            seen.add(parent.span_id)
            if parent.kind == KIND_LLM:
                enclosing = parent
                break
            parent = tree.parent(parent)
        if enclosing is None:
            calls_rows.append(row)
        else:
            nested.setdefault((enclosing.trace_id, enclosing.span_id), []).append(row)
    if not calls_rows and head.input is None and head.output is None and require_call:
        return None
    calls = [_fold_call(r, nested) for r in calls_rows]
    last = calls[-1] if calls else None

    def total(attr: str) -> Any:
        if len(calls) == 1:  # _sum / _fsum of one value, without the generator
            value = getattr(calls[0], attr)
            if value is None:
                return getattr(head, attr)
            return round_cost(float(value)) if attr == "cost" else value
        summed = (_fsum if attr == "cost" else _sum)(getattr(c, attr) for c in calls)
        return summed if summed is not None else getattr(head, attr)

    end_ns = None
    if head.kind == KIND_LLM and last is not None and last.row is head:
        source = last
        input_text, output_text, model = source.input, source.output, source.model
    elif head.kind == KIND_LLM and calls and calls[0].row is head:
        # A continued turn (``continues_turn``): the user's message went to the first call, the reply came from
        # the last one that made text.
        input_text = calls[0].input
        output_text = next((c.output for c in reversed(calls) if c.output), None)
        model = next((c.model for c in reversed(calls) if c.model), None)
        end_ns = max(c.row.end_ns for c in calls)
    else:
        input_text = head.input if head.input is not None else next(
            (c.input for c in calls if c.input), None)
        output_text = head.output if head.output is not None else next(
            (c.output for c in reversed(calls) if c.output), None)
        # The model that made the reply (an LLM call's response model), else what the agent or chain asked for.
        model = next((c.model for c in reversed(calls) if c.model), None) or head.model
    failed = head.is_error or (last is not None and last.row.is_error)
    error = head.error if head.is_error else (last.row.error if failed and last is not None else None)
    return Turn(
        head=head,
        input=input_text,
        output=output_text,
        model=model,
        input_tokens=total("input_tokens"),
        output_tokens=total("output_tokens"),
        cache_read_tokens=total("cache_read_tokens"),
        total_tokens=total("total_tokens"),
        cost=total("cost"),
        failed=failed,
        error=error,
        members=list(members),
        messages=_messages(last.input_messages, last.output_messages) if last is not None else _messages(
            head.input_messages, head.output_messages),
        finish_reason=last.finish_reason if last is not None else head.finish_reason,
        abandoned=head.abandoned or (last is not None and last.row.abandoned),
        end_ns=end_ns,
    )


def ends_with_tool_result(row: SpanRow) -> bool:
    """Whether an LLM call's input messages end with a tool result (the call after a tool ran)."""
    text = row.input_messages
    if not text or '"tool"' not in text:
        return False
    try:
        messages = json.loads(text)
    except ValueError:
        return False
    return bool(messages) and isinstance(messages, list) and isinstance(messages[-1], dict) and (
        messages[-1].get("role") == "tool")


def _continuations(heads: dict[Id, list[SpanRow]], tree: _Tree, work: Sequence[SpanRow],
                   loose: list[SpanRow]) -> None:
    """The user-turn rule for a tool round trip without an agent: in a trace with no agent or chain span, a
    top-level LLM call whose input ends with a tool result continues the previous turn of its trace (its head and
    members join that turn, and so do the spans outside any turn that are its siblings and started between the
    turn's first call and this one: the tool that ran in between). Changes ``heads`` and ``loose`` in place."""
    agent_traces = {r.trace_id for r in work if r.kind in (KIND_AGENT, KIND_CHAIN)}
    spans: list[tuple[Id, SpanRow, SpanRow]] = []  # (turn, its first call, the continuing call)
    by_trace: dict[str, list[SpanRow]] = {}
    for head_id in heads:
        if head_id[0] not in agent_traces:
            by_trace.setdefault(head_id[0], []).append(tree.by_id[head_id])
    for rows in by_trace.values():
        if len(rows) < 2:
            continue
        rows.sort(key=order_key)
        current = rows[0]
        for row in rows[1:]:
            if row.kind == KIND_LLM and ends_with_tool_result(row):
                members = heads.pop((row.trace_id, row.span_id))
                heads[(current.trace_id, current.span_id)].extend([row, *members])
                spans.append(((current.trace_id, current.span_id), current, row))
            else:
                current = row
    if not spans or not loose:
        return
    taken: dict[Id, Id] = {}  # a loose sibling -> the turn it joins
    for turn, first, call in spans:
        for row in loose:
            if (row.trace_id == first.trace_id and row.parent_span_id == call.parent_span_id
                    and order_key(first) < order_key(row) < order_key(call)):
                taken.setdefault((row.trace_id, row.span_id), turn)
    if not taken:
        return
    kept = []
    for row in loose:
        current_row: SpanRow | None = row
        seen: set[str] = set()
        while current_row is not None and (current_row.trace_id, current_row.span_id) not in taken:
            seen.add(current_row.span_id)
            parent = tree.parent(current_row)
            current_row = parent if parent is not None and parent.span_id not in seen else None
        if current_row is None:
            kept.append(row)
        else:
            heads[taken[(current_row.trace_id, current_row.span_id)]].append(row)
    loose[:] = kept


def _turns_by_head(work: Sequence[SpanRow], mode: str, continuations: bool = True
                   ) -> tuple[list[Turn], list[SpanRow]]:
    """One turn per head: the outermost span that may head a turn (``head_kinds``) enclosing each span; in
    ``user`` mode a tool round trip without an agent is one turn (``_continuations``)."""
    tree = _Tree(work)
    heads: dict[Id, list[SpanRow]] = {}
    loose: list[SpanRow] = []
    kinds = head_kinds(mode)

    def accept(r: SpanRow) -> bool:
        return r.kind in kinds

    for row in work:
        head = tree.outermost(row, accept)
        if head is None:
            loose.append(row)
        elif head is not row:
            heads.setdefault((head.trace_id, head.span_id), []).append(row)
        else:
            heads.setdefault((row.trace_id, row.span_id), [])
    if mode == "user" and continuations:
        _continuations(heads, tree, work, loose)
    turns = []
    for key, members in heads.items():
        turn = build_turn(tree.by_id[key], members)
        if turn is None:
            loose.extend([tree.by_id[key], *members])
        else:
            turns.append(turn)
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
        turn = build_turn(root, [r for r in rows if r is not root])
        if turn is None:
            loose.extend(rows)
        else:
            turns.append(turn)
    return turns, loose


def component_roots(work: Sequence[SpanRow]) -> dict[Id, str]:
    """Each work row's topmost ancestor among these rows (its own id when its parent is not among them): turns
    never reach across these components, but for the tool round trip rule (``_continuations``)."""
    by_id = {(r.trace_id, r.span_id): r for r in work}
    roots: dict[Id, str] = {}
    for row in work:
        chain: list[Id] = []
        current = row
        seen: set[str] = set()
        while True:
            ident = (current.trace_id, current.span_id)
            if ident in roots:
                root = roots[ident]
                break
            chain.append(ident)
            seen.add(current.span_id)
            parent = by_id.get((current.trace_id, current.parent_span_id)) if current.parent_span_id else None
            if parent is None or parent.span_id in seen:
                root = current.span_id
                break
            current = parent
        for ident in chain:
            roots[ident] = root
    return roots


def make_turns(work: Sequence[SpanRow], settings: PipelineSettings, *, continuations: bool = True
               ) -> tuple[list[Turn], list[SpanRow]]:
    """The priced turns (in conversation order) and loose spans of these work rows (no session spans or markers,
    late spans left out). Turns never reach across traces, so the rows of some whole traces of a session give
    exactly those traces' turns: what incremental assembly recomputes. ``continuations=False``: the caller knows
    the tool round trip rule is off for these rows (their traces have an agent, or no call that continues a
    turn), as it cannot tell from a part of a trace."""
    work = sorted(work, key=order_key)
    if settings.turns == "trace":
        turns, loose = _turns_by_trace(work)
    else:
        turns, loose = _turns_by_head(work, settings.turns, continuations)
    turns.sort(key=lambda t: order_key(t.head))
    for t in turns:  # galtea_otel.pricing: a reported cost, else the price file, else the bundled table
        t.cost, t.cost_source, t.price_version = decide_cost(
            t.cost, t.model, t.input_tokens, t.output_tokens, t.cache_read_tokens, t.head.start_ns)
        if t.cost is not None:
            t.cost = round_cost(t.cost)
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
    ordered = sorted(rows, key=order_key)
    sessions = [r for r in ordered if r.kind == KIND_SESSION]
    markers = [r for r in ordered if r.kind == KIND_MARKER]
    work = [r for r in ordered if r.kind not in (KIND_SESSION, KIND_MARKER)]
    starts = [r for r in markers if r.session_event == EVENT_START]
    status, error, ended_ns, late = _status(_ends(sessions, markers), work + starts, settings)
    if late:
        dropped = {(r.trace_id, r.span_id) for r in late}
        work = [r for r in work if (r.trace_id, r.span_id) not in dropped]
    turns, loose = make_turns(work, settings)
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
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _tool_arguments(messages: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """Tool call id -> the arguments the model gave it, from a turn's messages."""
    found: dict[str, Any] = {}
    for message in messages or ():
        for part in message.get("parts") or ():
            if isinstance(part, dict) and part.get("type") == "tool_call" and part.get("id"):
                found[str(part["id"])] = part.get("arguments")
    return found


def _is_json_object(text: str | None) -> bool:
    if not text or not text.startswith("{"):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _tool_input(row: SpanRow, calls: dict[str, Any]) -> str | None:
    """A tool span's input: as recorded, unless it is not the call's arguments object and the model's call
    (matched by ``tool.call_id``) says what they were; OpenInference's LangChain spans record a tool called with
    one string argument as the bare value (``"Paris"`` for ``{"city": "Paris"}``)."""
    if row.kind != "TOOL" or not calls or _is_json_object(row.input):
        return row.input
    call_id = _json_object(row.metadata).get("tool.call_id")
    arguments = calls.get(str(call_id)) if call_id is not None else None
    if not isinstance(arguments, dict):
        return row.input
    return json.dumps(arguments, ensure_ascii=False)


def _span_tree(rows: Sequence[SpanRow], messages: Sequence[dict[str, Any]] | None = None) -> list[SpanRecord]:
    calls = _tool_arguments(messages)
    ids = {(r.trace_id, r.span_id) for r in rows}
    children: dict[tuple[str, str] | None, list[SpanRow]] = {}
    for row in sorted(rows, key=order_key):
        parent = (row.trace_id, row.parent_span_id) if row.parent_span_id else None
        children.setdefault(parent if parent in ids else None, []).append(row)

    def build(row: SpanRow) -> SpanRecord:
        return SpanRecord(
            id=row.span_id,
            trace_id=row.trace_id,
            parent_id=row.parent_span_id,
            name=row.name,
            type=row.kind,
            input=_tool_input(row, calls),
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


def turn_record(turn: Turn) -> dict[str, Any]:
    """What the turns table keeps of a turn (``data``: JSON), enough to give its ``InferenceResult`` without
    reassembling: every field but the index (a position, computed at read time) and the span tree (built from
    the stored spans named by ``members``)."""
    return {
        "trace_id": turn.head.trace_id, "span_id": turn.head.span_id, "start_ns": turn.head.start_ns,
        "end_ns": turn.head.end_ns, "latency_ns": turn.latency_ns, "input": turn.input, "output": turn.output,
        "model": turn.model, "failed": turn.failed, "error": turn.error, "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens, "cache_read_tokens": turn.cache_read_tokens,
        "total_tokens": turn.total_tokens, "cost": turn.cost, "cost_source": turn.cost_source,
        "price_version": turn.price_version, "abandoned": turn.abandoned, "messages": turn.messages,
        "finish_reason": turn.finish_reason, "metadata": turn.head.metadata,
        "members": sorted(r.span_id for r in turn.members),
    }


def result_from_record(record: dict[str, Any], index: int, members: Sequence[SpanRow]) -> InferenceResult:
    """A stored turn (``turn_record``) as the ``index``-th inference result, with the span tree of ``members``."""
    return InferenceResult(
        id=record["span_id"],
        trace_id=record["trace_id"],
        index=index,
        input=record["input"],
        output=record["output"],
        model=record["model"],
        status="FAILED" if record["failed"] else "GENERATED",
        error=record["error"],
        started_at=_dt(record["start_ns"]),
        ended_at=_dt(record["end_ns"]),
        latency_ms=record["latency_ns"] / 1e6,
        input_tokens=record["input_tokens"],
        output_tokens=record["output_tokens"],
        cache_read_input_tokens=record["cache_read_tokens"],
        total_tokens=record["total_tokens"],
        cost=record["cost"],
        cost_source=record["cost_source"],
        price_version=record["price_version"],
        abandoned=record["abandoned"],
        messages=record["messages"],
        finish_reason=record["finish_reason"],
        metadata=_json_object(record["metadata"]),
        spans=_span_tree(members, record["messages"]),
    )


def detail_from_records(
    summary: dict[str, Any], records: Sequence[dict[str, Any]], rows: Sequence[SpanRow], late_after_ns: int | None,
) -> SessionDetail:
    """A session's full record from its stored summary, its stored turns (any order) and its span rows, without
    reassembling: the spans outside every turn (and not left out as late: started after ``late_after_ns``)
    are the session's."""
    by_id = {(r.trace_id, r.span_id): r for r in rows}
    ordered = sorted(records, key=lambda t: (t["start_ns"], t["end_ns"], t["trace_id"], t["span_id"]))
    taken: set[tuple[str, str]] = set()
    results = []
    for index, record in enumerate(ordered):
        trace = record["trace_id"]
        taken.add((trace, record["span_id"]))
        members = [by_id[(trace, m)] for m in record["members"] if (trace, m) in by_id]
        taken.update((trace, m) for m in record["members"])
        results.append(result_from_record(record, index, members))
    loose = [r for r in rows if (r.trace_id, r.span_id) not in taken and r.kind not in (KIND_SESSION, KIND_MARKER)
             and (late_after_ns is None or r.start_ns <= late_after_ns)]
    return SessionDetail(**SessionDetail.summary_fields(summary), inference_results=results,
                         spans=_span_tree(loose))


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
            abandoned=t.abandoned,
            messages=t.messages,
            finish_reason=t.finish_reason,
            metadata=_json_object(t.head.metadata),
            spans=_span_tree(t.members, t.messages),
        )
        for index, t in enumerate(assembly.turns)
    ]
    return SessionDetail(
        **SessionDetail.summary_fields(summary),
        inference_results=results,
        spans=_span_tree(assembly.loose),
    )
