"""How an application error is written on a span: status ERROR + description, an ``exception`` event and
``galtea.span.error``, all holding ``"ExcType: message"``. Never raises, even for an exception whose
``__str__`` does.

When a redaction is configured (``configure(redact=...)`` or ``redact_secrets=True``), every text written here
goes through it first: the description, and the exception event's message and stack trace (the event is then
written by hand instead of by the SDK's ``record_exception``)."""

from __future__ import annotations

import traceback

from opentelemetry.trace import Span, StatusCode

from galtea_otel.attributes import SPAN_ERROR
from galtea_otel.config import current
from galtea_otel.instrument.capture import redact_text
from galtea_otel.stats import internal_error

__all__ = ["describe", "mark_error", "record_exception"]


def describe(exc: BaseException) -> str:
    """``"ExcType: message"`` (just ``"ExcType"`` when the message is empty)."""
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        message = "<message unavailable>"
    return f"{name}: {message}" if message else name


def mark_error(span: Span, description: str) -> None:
    """Status ERROR with ``description`` (redacted) and ``galtea.span.error``."""
    try:
        description = redact_text(description, current())
        span.set_status(StatusCode.ERROR, description)
        span.set_attribute(SPAN_ERROR, description)
    except Exception as exc:
        internal_error("mark_error", exc)


def record_exception(span: Span, exc: BaseException) -> None:
    """Mark ``span`` as failed by ``exc`` (the exception itself is left untouched)."""
    mark_error(span, describe(exc))
    config = current()
    if config.redact is not None:
        try:
            try:
                stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            except Exception:
                stack = describe(exc)
            span.add_event("exception", {
                "exception.type": type(exc).__qualname__,
                "exception.message": redact_text(_message(exc), config),
                "exception.stacktrace": redact_text(stack, config),
                "exception.escaped": "True",
            })
        except Exception as inner:
            internal_error("record_exception", inner)
        return
    try:
        span.record_exception(exc, escaped=True)
    except Exception:  # e.g. an exception whose __str__ raises: record the event by hand
        try:
            span.add_event("exception", {"exception.type": type(exc).__qualname__,
                                         "exception.message": describe(exc), "exception.escaped": "True"})
        except Exception as inner:
            internal_error("record_exception", inner)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<message unavailable>"
