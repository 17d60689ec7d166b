"""The OpenTelemetry GenAI event ``gen_ai.evaluation.result``, read from span events (any producer's, and ours).

An event on a span scores that span: the turn it belongs to, or the session when it belongs to none. Ours
(``galtea_otel.record_evaluation``) add ``galtea.evaluation.source`` = ``app`` and, when called outside any
inference, ``galtea.evaluation.target`` = ``session``; events of other producers are ``ingested``.

:func:`span_evaluations` turns a span's events into the JSON text kept on its span row (``SpanRow.evaluations``),
so that a replayed span brings no second copy (rows are stored once per span id).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

EVENT_EVALUATION = "gen_ai.evaluation.result"
ATTR_NAME = "gen_ai.evaluation.name"
ATTR_SCORE = "gen_ai.evaluation.score.value"
ATTR_LABEL = "gen_ai.evaluation.score.label"
ATTR_EXPLANATION = "gen_ai.evaluation.explanation"
ATTR_ERROR_TYPE = "error.type"
ATTR_RESPONSE_ID = "gen_ai.response.id"
# galtea-otel's own additions.
ATTR_SOURCE = "galtea.evaluation.source"
ATTR_TARGET = "galtea.evaluation.target"
ATTR_EVALUATOR_NAME = "galtea.evaluation.evaluator.name"
ATTR_EVALUATOR_VERSION = "galtea.evaluation.evaluator.version"

MAX_TEXT = 4096  # an explanation longer than this is cut


def _text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\ufffd")
    return text[:limit]


def _score(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def evaluation_from_attributes(attrs: Mapping[str, Any], time_ns: int) -> dict[str, Any] | None:
    """One evaluation (a plain dict) from the attributes of a ``gen_ai.evaluation.result`` event or log record;
    None when it names no evaluation (``gen_ai.evaluation.name`` is required)."""
    name = _text(attrs.get(ATTR_NAME), 200)
    if name is None:
        return None
    source = attrs.get(ATTR_SOURCE)
    item: dict[str, Any] = {
        "name": name,
        "score": _score(attrs.get(ATTR_SCORE)),
        "label": _text(attrs.get(ATTR_LABEL), 200),
        "explanation": _text(attrs.get(ATTR_EXPLANATION)),
        "error": _text(attrs.get(ATTR_ERROR_TYPE), 500),
        "source": "app" if source == "app" else "ingested",
        "session": attrs.get(ATTR_TARGET) == "session",
        "time_ns": int(time_ns),
    }
    evaluator = _text(attrs.get(ATTR_EVALUATOR_NAME), 200)
    if evaluator is not None:
        item["evaluator"] = {"name": evaluator, "version": _text(attrs.get(ATTR_EVALUATOR_VERSION), 100)}
    response_id = _text(attrs.get(ATTR_RESPONSE_ID), 200)
    if response_id is not None:
        item["response_id"] = response_id
    return item


def span_evaluations(events: Sequence[Any], redact: Callable[[str], str] | None = None) -> str | None:
    """The ``gen_ai.evaluation.result`` events of a span (``SpanData.events``) as JSON list text, or None;
    ``redact`` (the pipeline's) masks the text, as it does the span's metadata."""
    found = []
    for event in events:
        if event.name != EVENT_EVALUATION:
            continue
        item = evaluation_from_attributes(event.attributes, event.time_ns)
        if item is None:
            from galtea_otel.stats import incr

            incr("evaluations_invalid")  # an evaluation event without gen_ai.evaluation.name
            continue
        found.append(item)
    if not found:
        return None
    text = json.dumps(found, sort_keys=True, separators=(",", ":"))
    return redact(text) if redact is not None else text
