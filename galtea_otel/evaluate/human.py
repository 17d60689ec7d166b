"""A person's evaluation of a session or of one of its turns (source ``human``): what ``galtea-otel annotate``
and the UI's annotation form (``galtea-otel ui --annotate``) store, through ``evaluate.storage``."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galtea_otel.records import Evaluation, SessionDetail

MAX_NAME = 200
MAX_LABEL = 200
MAX_NOTE = 10_000


class AnnotationError(ValueError):
    """An annotation that cannot be stored as given (the message says what to change)."""


def human_evaluation(detail: SessionDetail, *, name: str, score: float | None = None, label: str | None = None,
                     note: str | None = None, turn: int | None = None, author: str = "human") -> Evaluation:
    """The evaluation to store: of turn ``turn`` (its index) when given, else of the session. Exactly one of
    ``score`` (a finite number) and ``label`` (a short text); raises :class:`AnnotationError` otherwise."""
    from galtea_otel.records import Evaluation, EvaluatorRef

    name = name.strip()
    label = label.strip() if label is not None else None
    if not name:
        raise AnnotationError("the name must not be empty")
    if len(name) > MAX_NAME:
        raise AnnotationError(f"the name is longer than {MAX_NAME} characters")
    if (score is None) == (label is None or label == ""):
        raise AnnotationError("give exactly one of a score and a label")
    if score is not None and not math.isfinite(score):
        raise AnnotationError("the score must be a finite number")
    if label is not None and len(label) > MAX_LABEL:
        raise AnnotationError(f"the label is longer than {MAX_LABEL} characters")
    if note is not None and len(note) > MAX_NOTE:
        raise AnnotationError(f"the note is longer than {MAX_NOTE:,} characters")
    target: dict[str, Any] = {"target": "session"}
    if turn is not None:
        turns = detail.inference_results
        if not 0 <= turn < len(turns):
            raise AnnotationError(f"session {detail.custom_id!r} has {len(turns)} turn(s): no turn {turn}")
        chosen = turns[turn]
        target = {"target": "turn", "turn_id": chosen.id, "span_id": chosen.id, "trace_id": chosen.trace_id}
    return Evaluation(
        id=uuid.uuid4().hex, name=name, score=score, label=label or None, explanation=note or None,
        evaluator=EvaluatorRef(name=author or "human"), source="human",
        created_at=datetime.fromtimestamp(time.time(), tz=UTC), **target)


def annotate(store: Any, key: tuple[str, ...], detail: SessionDetail, **fields: Any) -> Evaluation:
    """Build (:func:`human_evaluation`) and store the evaluation of the session ``key``; return it."""
    from galtea_otel.evaluate import storage

    evaluation = human_evaluation(detail, **fields)
    storage.save(store, key, [evaluation])
    return evaluation
