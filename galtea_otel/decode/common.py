"""What the OTLP decoders share: their result, their error, and the rules for ids and values.

A body that cannot be read at all raises :class:`DecodeError` (the receiver answers 400). A span that is
readable but invalid (bad ids, a malformed attribute) is *rejected*: counted in :attr:`DecodeResult.rejected`
with a reason, while the other spans of the request go on (the receiver answers 200 with a partial success).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from galtea_otel.spandata import SpanData

MAX_ERRORS = 20
"""At most this many reasons are kept per request; the count of rejected spans is always exact."""

MAX_UINT63 = 1 << 63
"""Timestamps must fit a signed 64-bit integer (the stores keep them as such): before the year 2262."""

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class DecodeError(ValueError):
    """The body is not an OTLP trace request at all (not protobuf / not JSON / wrong structure)."""


class InvalidSpan(ValueError):
    """One span is invalid; it is rejected and the rest of the request is kept."""


@dataclass(slots=True)
class DecodeResult:
    """The spans decoded from one request, how many were rejected and why (at most ``MAX_ERRORS`` reasons)."""

    spans: list[SpanData] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{where}: {reason}")


def shown(value: object, limit: int = 40) -> str:
    """A short, safe rendering of an offending value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_json_text(value: Any) -> str:
    """Compact JSON text for a nested attribute value (kvlist, array of arrays...)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_SCALAR_TYPES = (str, bool, int, float)


def homogeneous_array(items: list[Any]) -> Any:
    """An OTLP array: a tuple when its items are scalars of one type (as the SDK keeps them), else JSON."""
    if not items:
        return ()
    first = type(items[0])
    if first in _SCALAR_TYPES and all(type(item) is first for item in items):
        return tuple(items)
    return to_json_text(items)
