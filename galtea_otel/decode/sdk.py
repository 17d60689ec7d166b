"""OpenTelemetry SDK ``ReadableSpan`` -> ``SpanData`` (the in-process source)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from galtea_otel.spandata import EventData, SpanData


def from_sdk(span: ReadableSpan) -> SpanData:
    ctx = span.context
    parent = span.parent
    status = span.status
    resource = span.resource
    scope = span.instrumentation_scope
    return SpanData(
        trace_id=format(ctx.trace_id, "032x") if ctx is not None else "",
        span_id=format(ctx.span_id, "016x") if ctx is not None else "",
        parent_span_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status_code=status.status_code.value,
        status_message=status.description or "",
        attributes=span.attributes or {},
        events=tuple(EventData(e.name, e.timestamp, e.attributes or {}) for e in span.events),
        resource=resource.attributes if resource is not None else {},
        scope=scope.name if scope is not None else "",
    )


def from_sdk_spans(spans: Sequence[ReadableSpan]) -> list[SpanData]:
    return [from_sdk(s) for s in spans]
