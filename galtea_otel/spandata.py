"""The one neutral span shape every source is decoded into.

The in-process exporter (OpenTelemetry SDK ``ReadableSpan``), OTLP/protobuf and OTLP/JSON all decode into
:class:`SpanData`; everything downstream (translate -> assemble -> store) only ever sees this shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.util.types import AnyValue

# OpenTelemetry's own attribute value type (scalars, homogeneous sequences, bytes, nested mappings).
AttrValue = AnyValue
Attributes = Mapping[str, AttrValue]

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2


# Not ``frozen``: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, 2.6 us a span
# against 0.4 us (every span of every source is made into one). Treat both as immutable all the same: nothing
# downstream writes to them (their mappings make them unhashable either way).
@dataclass(slots=True)
class EventData:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@dataclass(slots=True)
class SpanData:
    """A finished span, independent of where it came from.

    Ids are lower-case hex: 32 characters for ``trace_id``, 16 for ``span_id`` / ``parent_span_id``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status_code: int = STATUS_UNSET
    status_message: str = ""
    attributes: Attributes = field(default_factory=dict)
    events: Sequence[EventData] = ()
    resource: Attributes = field(default_factory=dict)
    scope: str = ""
