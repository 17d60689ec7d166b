"""The records galtea-otel produces: Session, InferenceResult (a turn) and Span.

Field names follow SESSION_MODEL section 1 and mirror the Galtea platform's entities. These models are what the
store returns, what ``galtea-otel sessions ... --json`` prints and what the platform sync sends.
Timestamps are UTC datetimes; ``input`` / ``output`` are plain text when the captured value was a string and
compact JSON text otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

SessionStatus = Literal["PENDING", "COMPLETED", "FAILED"]
TurnStatus = Literal["GENERATED", "FAILED"]


def _utc(ns: int | None) -> datetime | None:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC) if ns is not None else None


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpanRecord(_Record):
    """A non-LLM operation (tool call, retrieval, chain step...) inside a turn or a session, as a tree."""

    id: str
    trace_id: str
    parent_id: str | None
    name: str
    type: str
    input: str | None = None
    output: str | None = None
    status: Literal["OK", "ERROR"] = "OK"
    error: str | None = None
    started_at: datetime
    ended_at: datetime
    latency_ms: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    children: list[SpanRecord] = Field(default_factory=list)


EvaluationSource = Literal["app", "evaluator", "human", "ingested"]


class EvaluatorRef(_Record):
    """The evaluator that made an evaluation."""

    name: str
    version: str | None = None


class Evaluation(_Record):
    """A score of one turn or of a whole session (issue 11): ``score`` (a number) and/or ``label``.

    ``source``: ``app`` (``galtea_otel.record_evaluation``), ``evaluator`` (run when the session ended),
    ``human`` (``galtea-otel annotate``), ``ingested`` (a ``gen_ai.evaluation.result`` event from any producer).
    ``target`` is ``turn`` (``turn_id``: the turn's ``id``) or ``session``. ``error`` is set when the evaluator
    failed (raised, timed out); ``superseded`` when a later run of the same evaluator replaced it (the session
    was reopened and ended again). ``metadata`` holds what an evaluator adds (an LLM judge's model, tokens, cost).
    """

    id: str
    name: str
    score: float | None = None
    label: str | None = None
    explanation: str | None = None
    evaluator: EvaluatorRef | None = None
    source: EvaluationSource = "app"
    target: Literal["session", "turn"] = "session"
    turn_id: str | None = None
    span_id: str | None = None  # the evaluated span (the turn's head or a span inside it), when known
    trace_id: str | None = None  # its trace
    created_at: datetime
    error: str | None = None
    superseded: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


class InferenceResult(_Record):
    """One turn: an input/output pair (an outermost LLM call, or a trace in ``trace`` turn mode)."""

    id: str
    trace_id: str
    index: int
    input: str | None = None
    output: str | None = None
    model: str | None = None
    status: TurnStatus = "GENERATED"
    error: str | None = None
    started_at: datetime
    ended_at: datetime
    latency_ms: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    # Where ``cost`` came from (galtea_otel.pricing): ``reported`` by the spans, the price file (``override``), the
    # bundled price table (``table``); None when there is no cost. ``price_version``: the price list used.
    cost_source: Literal["reported", "table", "override"] | None = None
    price_version: str | None = None
    abandoned: bool = False
    # The conversation as the model saw it in this turn, in the normalized GenAI message shape (README,
    # "The content model"): ``{"role": ..., "parts": [...]}`` objects, what was sent then what came back.
    messages: list[dict[str, Any]] = Field(default_factory=list)
    finish_reason: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    spans: list[SpanRecord] = Field(default_factory=list)
    evaluations: list[Evaluation] = Field(default_factory=list)  # scores of this turn (issue 11)


class Session(_Record):
    """One conversation, identified by (``project``, ``custom_id``, ``version``)."""

    custom_id: str
    version: str
    # Issue 12: the project the session belongs to (``serve --tokens``: the token that wrote it), "default"
    # without projects.
    project: str = "default"
    test_case_id: str | None = None
    context: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: SessionStatus = "PENDING"
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    turn_count: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    user_id: str | None = None
    cache_read_input_tokens: int | None = None
    model: str | None = None  # the first turn's model
    first_input: str | None = None  # the first turn's input (the user's first message)
    last_output: str | None = None  # the last turn's output (the assistant's last reply)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_ms(self) -> float | None:
        """Wall-clock duration, start to end (None while PENDING); ``latency_ms`` sums the turns' latencies."""
        if self.started_at is None or self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds() * 1000, 3)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_production(self) -> bool:
        return self.test_case_id is None

    @classmethod
    def summary_fields(cls, summary: Mapping[str, Any]) -> dict[str, Any]:
        """The Session fields from a stored or assembled summary (nanosecond times, metadata as JSON text or a
        dict), for ``Session(**...)`` and ``SessionDetail(**..., inference_results=...)``."""
        metadata = summary["metadata"]
        return {
            "custom_id": summary["custom_id"],
            "version": summary["version"],
            "project": summary.get("project") or "default",
            "test_case_id": summary["test_case_id"],
            "context": summary["context"],
            "metadata": json.loads(metadata) if isinstance(metadata, str) else (metadata or {}),
            "status": summary["status"],
            "error": summary["error"],
            "started_at": _utc(summary["started_ns"]),
            "ended_at": _utc(summary["ended_ns"]),
            **{name: summary[name] for name in ("turn_count", "input_tokens", "output_tokens", "total_tokens",
                                                "cost", "latency_ms")},
            **{name: summary.get(name) for name in ("user_id", "model", "first_input", "last_output")},
            "cache_read_input_tokens": summary.get("cache_read_tokens"),
        }


class SessionDetail(Session):
    """A session with its turns (``inference_results``, in order) and the spans outside any turn."""

    inference_results: list[InferenceResult] = Field(default_factory=list)
    spans: list[SpanRecord] = Field(default_factory=list)
    evaluations: list[Evaluation] = Field(default_factory=list)  # scores of the whole session (issue 11)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unpriced_turns(self) -> list[int]:
        """Indexes of the turns that used a model (with tokens) but have no cost: a model no price list knows."""
        return [t.index for t in self.inference_results if t.cost is None and t.model
                and (t.input_tokens is not None or t.output_tokens is not None)]


class TestCase(_Record):
    """An evaluation test case; a non-production session takes its ``context`` from here."""

    __test__ = False  # not a pytest test class

    id: str
    input: str | None = None
    expected_output: str | None = None
    context: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
