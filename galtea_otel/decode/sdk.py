"""OpenTelemetry SDK ``ReadableSpan`` -> ``SpanData`` (the in-process source)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from galtea_otel.spandata import Attributes, EventData, SpanData


def _attributes(span: ReadableSpan) -> Attributes:
    # ReadableSpan.attributes wraps BoundedAttributes (a lock per key read) in a MappingProxy; a finished span's
    # attributes no longer change, so read the plain dict behind them when it is there.
    plain = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(plain, dict):
        return plain
    return dict(span.attributes or {})


_resource_cache: tuple[object, Attributes] | None = None


def _resource(span: ReadableSpan) -> Attributes:
    """A process has one Resource: convert its attributes to a plain dict once, not once per span."""
    global _resource_cache
    resource = span.resource
    if resource is None:
        return {}
    cached = _resource_cache
    if cached is not None and cached[0] is resource:
        return cached[1]
    plain = dict(resource.attributes)
    _resource_cache = (resource, plain)
    return plain


def _events(span: ReadableSpan) -> tuple[EventData, ...]:
    # ReadableSpan.events copies the span's BoundedList into a tuple every time it is read; most spans have no
    # event, which the list behind it tells without the copy.
    plain = getattr(span, "_events", None)
    if plain is not None and not plain:
        return ()
    return tuple(EventData(e.name, e.timestamp, e.attributes or {}) for e in span.events)


def from_sdk(span: ReadableSpan) -> SpanData:
    ctx = span.context
    parent = span.parent
    status = span.status
    scope = span.instrumentation_scope
    # Positional, in SpanData's field order (the dataclass' own): a call with 12 keywords costs more.
    return SpanData(
        format(ctx.trace_id, "032x") if ctx is not None else "",  # trace_id
        format(ctx.span_id, "016x") if ctx is not None else "",  # span_id
        format(parent.span_id, "016x") if parent is not None else None,  # parent_span_id
        span.name,
        span.start_time or 0,  # start_ns
        span.end_time or span.start_time or 0,  # end_ns
        status.status_code.value,  # status_code
        status.description or "",  # status_message
        _attributes(span),
        _events(span),
        _resource(span),
        scope.name if scope is not None else "",  # scope
    )


def from_sdk_spans(spans: Sequence[ReadableSpan]) -> list[SpanData]:
    return [from_sdk(s) for s in spans]
