"""Captured values: serialize -> redact -> truncate, in that order, before anything is set on a span.

Redaction runs on the JSON text (so it sees every secret), truncation last (so the result stays within the limit
and valid JSON). A value much larger than the limit is serialized only up to the limit plus a margin
(:func:`~galtea_otel.instrument.serialize.to_json_bounded`): capturing it costs time in proportion to the limit,
not to the value. The redaction hook then gets that prefix (not valid JSON), and the final cut drops the margin,
so a secret the prefix cuts in two is not kept. Nothing here raises: a failing redaction hook drops the value
(replaced by ``REDACTION_FAILED``) and is counted.

``config.redact`` is the whole redaction in force: ``configure(redact_secrets=True, redact=hook)`` makes it
``chain(secrets(), hook)``. :func:`redact_text` applies it to the plain texts galtea-otel records (error
messages, exception events, the session context).
"""

from __future__ import annotations

from typing import Any

from galtea_otel.config import Config
from galtea_otel.instrument.serialize import cut_prefix, to_json_bounded, truncate_json
from galtea_otel.stats import incr, internal_error

__all__ = ["REDACTION_FAILED", "REDACTION_FAILED_TEXT", "encode", "encode_json_text", "redact_text"]

REDACTION_FAILED = '{"galtea.redaction_failed":true}'
REDACTION_FAILED_TEXT = "[REDACTED:redaction_failed]"


def encode(value: Any, config: Config) -> str:
    """The attribute text for a captured value."""
    text, complete = to_json_bounded(value, config.max_value_bytes)
    if complete:
        return encode_json_text(text, config)
    redact = config.redact
    if redact is not None:
        try:
            redacted = redact(text)
            if not isinstance(redacted, str):
                raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not str")
            text = redacted
        except Exception as exc:
            incr("redaction_failures")
            internal_error("redact", exc)
            return REDACTION_FAILED
    incr("truncations")
    return cut_prefix(text, config.max_value_bytes, len(value) if type(value) is str else None)


def encode_json_text(text: str, config: Config) -> str:
    """Redact and truncate JSON text already serialized."""
    redact = config.redact
    if redact is not None:
        try:
            redacted = redact(text)
            if not isinstance(redacted, str):
                raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not str")
            text = redacted
        except Exception as exc:
            incr("redaction_failures")
            internal_error("redact", exc)
            return REDACTION_FAILED
    text, truncated = truncate_json(text, config.max_value_bytes)
    if truncated:
        incr("truncations")
    return text


def redact_text(text: str, config: Config) -> str:
    """``text`` (plain, not JSON) through the redaction in force; ``REDACTION_FAILED_TEXT`` if the hook fails."""
    redact = config.redact
    if redact is None:
        return text
    try:
        redacted = redact(text)
        if not isinstance(redacted, str):
            raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not str")
        return redacted
    except Exception as exc:
        incr("redaction_failures")
        internal_error("redact", exc)
        return REDACTION_FAILED_TEXT
