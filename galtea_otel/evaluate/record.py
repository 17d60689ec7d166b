"""``galtea_otel.record_evaluation()``: the app scores the current inference, or the current session.

The evaluation is the OpenTelemetry GenAI event ``gen_ai.evaluation.result`` on the evaluated span, so any
backend reading GenAI events sees it too; galtea-otel's pipeline turns it into an ``Evaluation`` (source
``app``). Imports only the OpenTelemetry API: this is on the instrumentation path.
"""

from __future__ import annotations

import logging
import math

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from galtea_otel.config import current
from galtea_otel.evaluate.events import (
    ATTR_ERROR_TYPE,
    ATTR_EXPLANATION,
    ATTR_LABEL,
    ATTR_NAME,
    ATTR_SCORE,
    ATTR_SOURCE,
    ATTR_TARGET,
    EVENT_EVALUATION,
)
from galtea_otel.instrument.capture import redact_text
from galtea_otel.instrument.context import INFERENCE_KEY, SESSION_KEY
from galtea_otel.stats import incr, internal_error

__all__ = ["record_evaluation"]

logger = logging.getLogger("galtea_otel")
_warned_outside = False


def _check(name: object, score: object, label: object, explanation: object, error: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"record_evaluation(): name must be a non-empty str, not {name!r}")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                              or not math.isfinite(score)):
        raise TypeError(f"record_evaluation(): score must be a finite number, not {score!r}")
    for field, value in (("label", label), ("explanation", explanation), ("error", error)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"record_evaluation(): {field} must be a str, not {type(value).__name__}")
    if score is None and label is None and error is None:
        raise ValueError("record_evaluation(): give a score and/or a label")


def record_evaluation(
    name: str, score: float | None = None, label: str | None = None, explanation: str | None = None,
    *, error: str | None = None,
) -> bool:
    """Score the current inference (inside an ``@inference``), else the current session.

    ``score`` is a number, ``label`` a short text (``"pass"``, ``"relevant"``...), at least one of them;
    ``explanation`` why; ``error`` says the evaluation itself failed. Wrong argument types raise ``TypeError`` /
    ``ValueError`` at once. Outside any session it records nothing and returns False (logged once, counted in
    ``galtea_otel.stats()["record_evaluation.outside_session"]``). Example::

        with galtea_otel.session(custom_id="conv-42", version="1.4.0"):
            reply = chat("hello")
            galtea_otel.record_evaluation("polite", score=1.0, explanation="greets back")
    """
    global _warned_outside
    _check(name, score, label, explanation, error)
    try:
        config = current()
        target = otel_context.get_value(INFERENCE_KEY)
        attributes: dict[str, str | float] = {ATTR_NAME: name.strip(), ATTR_SOURCE: "app"}
        if not isinstance(target, Span) or not target.is_recording():
            target = trace.get_current_span() if otel_context.get_value(SESSION_KEY) is not None else None
            if target is None or not target.is_recording():
                incr("record_evaluation.outside_session")
                if not _warned_outside:
                    _warned_outside = True
                    logger.warning("galtea-otel: record_evaluation() called outside any session; ignored")
                return False
            attributes[ATTR_TARGET] = "session"
        if score is not None:
            attributes[ATTR_SCORE] = float(score)
        if label is not None:
            attributes[ATTR_LABEL] = label
        if explanation is not None:
            attributes[ATTR_EXPLANATION] = redact_text(explanation, config)
        if error is not None:
            attributes[ATTR_ERROR_TYPE] = redact_text(error, config)
        target.add_event(EVENT_EVALUATION, attributes)
        return True
    except Exception as exc:
        internal_error("record_evaluation", exc)
        return False
