"""Request bodies for the Galtea REST API, built with the official SDK's own pydantic models.

Each body is a ``model_dump(by_alias=True, exclude_none=True)`` of the model the SDK itself sends
(``SessionBase``, ``SessionUpdate``, ``TraceBase``, ``TraceUpdate``, ``SpanBase``), so field names and types are
the SDK's.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from galtea.domain.models.session import SessionBase, SessionUpdate
from galtea.domain.models.span import SpanBase, SpanType
from galtea.domain.models.trace import TraceBase, TraceUpdate
from pydantic import BaseModel

from galtea_otel.records import InferenceResult, Session, SpanRecord

_SPAN_TYPES = {t.value for t in SpanType}


def turn_key(turn: InferenceResult) -> str:
    """The local identity of a turn (its span), under which its platform id is remembered."""
    return f"{turn.trace_id}:{turn.id}"


def platform_span_id(span: SpanRecord) -> str:
    """The id a span gets on the platform: the SDK's own form, ``trace_<16 hex span id>``."""
    return f"trace_{span.id}"


def _dump(model: BaseModel, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(by_alias=True, mode="json", **options)
    return body


def fingerprint(session: Session) -> str:
    """A digest of the session fields that a PATCH updates (context, metadata)."""
    text = json.dumps([session.context if session.is_production else None, session.metadata], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def create_session(session: Session, version_id: str) -> dict[str, Any]:
    """``POST sessions``. A non-production session takes its context from its test case on the platform, which
    refuses a context beside a test case, so the context goes only with a production session."""
    model = SessionBase(
        custom_id=session.custom_id,
        version_id=version_id,
        test_case_id=session.test_case_id,
        context=session.context if session.is_production else None,
        metadata=session.metadata or None,
    )
    body = _dump(model, exclude_none=True)
    body["isProduction"] = session.is_production
    return body


def update_session(session: Session, *, status: str | None = None) -> dict[str, Any]:
    """``PATCH sessions/{id}``: context and metadata (and the status when given)."""
    fields: dict[str, Any] = {"metadata": session.metadata}
    if session.is_production:
        fields["context"] = session.context
    if status is not None:
        fields["status"] = status
    return _dump(SessionUpdate(**fields), exclude_unset=True)


def finish_session(session: Session, stopping_reason: str) -> dict[str, Any]:
    """``PATCH sessions/{id}/finish``: ``stoppingReason`` closes it COMPLETED; with ``error`` it is FAILED."""
    fields: dict[str, Any] = {"stopping_reason": stopping_reason}
    if session.status == "FAILED":
        fields["stopping_reason"] = "FAILED"
        fields["error"] = session.error or "failed"
    return _dump(SessionUpdate(**fields), exclude_unset=True)


def create_turn(turn: InferenceResult, session_id: str) -> dict[str, Any]:
    """``POST inferenceResults``."""
    return _dump(TraceBase(session_id=session_id, **_turn_fields(turn)), exclude_none=True)


def _turn_fields(turn: InferenceResult) -> dict[str, Any]:
    """The fields of a turn the platform holds, by the SDK's field names (both ``create_turn`` and
    ``update_turn`` send these)."""
    return {
        "input": turn.input,
        "actual_output": turn.output,
        "latency": round(turn.latency_ms, 3),
        "status": turn.status,
        "error": turn.error,
        "input_tokens": turn.input_tokens,
        "output_tokens": turn.output_tokens,
        "cache_read_input_tokens": turn.cache_read_input_tokens,
        "tokens": turn.total_tokens,
        "cost": turn.cost,
    }


def update_turn(turn: InferenceResult) -> dict[str, Any]:
    """``PATCH inferenceResults/{id}``: the turn as it is now, as the SDK's ``traces.update`` sends it (a
    ``TraceUpdate`` dumped with ``exclude_unset``). Every field the turn has, not a difference, so sending it twice
    changes nothing.

    A field the turn has no value for is left out (left as the platform holds it), except ``error``, sent as
    null when the turn has none, so that a turn no longer failed loses its error."""
    fields = {name: value for name, value in _turn_fields(turn).items() if value is not None or name == "error"}
    return _dump(TraceUpdate(**fields), exclude_unset=True)


def turn_fingerprint(turn: InferenceResult) -> str:
    """A digest of the turn's fields that the platform holds (what ``update_turn`` sends): remembered per turn
    when it is created or updated; a turn whose digest changed since is updated."""
    text = json.dumps(update_turn(turn), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def turn_is_current(remote: dict[str, Any], update: dict[str, Any]) -> bool:
    """Whether a turn as the platform returns it already holds every field of ``update`` (an ``update_turn``
    body): a turn adopted after a lost answer needs no update then."""
    for name, sent in update.items():
        held = remote.get(name)
        if name == "input" and isinstance(held, dict):
            held = held.get("user_message", held)
        if isinstance(sent, float) or isinstance(held, float):
            if not isinstance(held, int | float) or not isinstance(sent, int | float):
                return False
            if not math.isclose(float(held), float(sent), rel_tol=1e-9, abs_tol=0.01 if name == "latency" else 0):
                return False
        elif held != sent:
            return False
    return True


def same_turn(remote: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether a turn the platform holds is the one this body creates (turns have no custom id on the platform:
    the sync matches a turn whose creation's answer was lost by its content)."""
    remote_input = remote.get("input")
    if isinstance(remote_input, dict):
        remote_input = remote_input.get("user_message", remote_input)
    if remote_input != body.get("input") or remote.get("actualOutput") != body.get("actualOutput"):
        return False
    latency, sent = remote.get("latency"), body.get("latency")
    return latency is None or sent is None or abs(float(latency) - float(sent)) <= 0.01


def flatten(spans: list[SpanRecord]) -> Iterator[SpanRecord]:
    for span in spans:
        yield span
        yield from flatten(span.children)


def _data(text: str | None) -> Any:
    """A captured value as the span's data: the JSON value when the text is JSON, else the text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def create_span(span: SpanRecord, turn_id: str, parent: str | None) -> dict[str, Any]:
    """One element of ``POST traces/batch``'s ``traces`` (a Galtea span under the turn ``turn_id``)."""
    kind = span.type.upper() if span.type else "SPAN"
    return _dump(SpanBase(
        id=platform_span_id(span),
        trace_id=turn_id,
        name=span.name or "span",
        type=kind if kind in _SPAN_TYPES else "SPAN",
        input_data=_data(span.input),
        output_data=_data(span.output),
        error=span.error if span.status == "ERROR" or span.error else None,
        latency_ms=round(span.latency_ms, 3),
        metadata=span.metadata or None,
        parent_span_id=parent,
        start_time=_iso(span.started_at),
        end_time=_iso(span.ended_at),
    ), exclude_none=True)


def turn_spans(turn: InferenceResult, turn_id: str) -> list[dict[str, Any]]:
    """The turn's non-LLM spans, parents first; a span whose parent is the turn itself has no parent span."""
    local = {s.id for s in flatten(turn.spans)}
    return [create_span(s, turn_id, f"trace_{s.parent_id}" if s.parent_id in local else None)
            for s in flatten(turn.spans)]
