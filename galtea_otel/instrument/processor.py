"""The one span processor galtea-otel adds to a TracerProvider: stamping, then export.

**Stamping.** ``on_start`` copies the current session's stamp (``galtea.session.custom_id``,
``galtea.session.version``, ``gen_ai.conversation.id``, ``session.id``) from the span's parent Context onto
every span that starts inside a session, whichever library started it. It writes them first, so they are the
span's oldest attributes.

**The 128-attribute limit.** The SDK's ``BoundedAttributes`` evicts the *oldest* attribute when a span exceeds
its limit (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, default 128), so the stamped keys would be the first to go.
The public API cannot set an attribute on an ending span, so ``_on_ending`` (the SDK's hook that runs just
before a span becomes read-only) re-inserts the stamp into the span's attribute map when some of it was
evicted (counted as ``stamp_restored``). Should a future SDK change those internals, the failure is counted
and the translator still finds the session from the span's ancestors or its trace (SESSION_MODEL section 2).

**Export.** The inner export processor (a ``BatchSpanProcessor`` around the session exporter) can be swapped
by a later ``configure()``: one ``GalteaSpanProcessor`` is ever registered per provider.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from galtea_otel.instrument.context import SESSION_KEY
from galtea_otel.stats import incr, internal_error

__all__ = ["GalteaSpanProcessor"]

_STAMP_ATTR = "_galtea_otel_stamp"


class GalteaSpanProcessor(SpanProcessor):
    """Stamps session attributes on span start and forwards every span to an (optional) export processor."""

    def __init__(self, export: SpanProcessor | None = None, exporter: object | None = None) -> None:
        self._export = export
        self.exporter = exporter  # the SpanExporter behind ``export``, when known (configure() compares it)
        self._lock = threading.Lock()

    @property
    def export(self) -> SpanProcessor | None:
        return self._export

    def swap_export(
        self, export: SpanProcessor | None, exporter: object | None = None
    ) -> SpanProcessor | None:
        """Install ``export`` and return the previous export processor (the caller shuts it down)."""
        with self._lock:
            old, self._export, self.exporter = self._export, export, exporter
        return old

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            stamp = otel_context.get_value(SESSION_KEY, parent_context)
            if stamp is not None:
                span.set_attributes(stamp)  # type: ignore[arg-type]
                setattr(span, _STAMP_ATTR, stamp)
                incr("spans_started_in_session")
        except Exception as exc:
            internal_error("processor.on_start", exc)
        export = self._export
        if export is not None:
            try:
                export.on_start(span, parent_context=parent_context)
            except Exception as exc:
                internal_error("processor.export_on_start", exc)

    def _on_ending(self, span: Span) -> None:
        try:
            if span.dropped_attributes:
                stamp: dict[str, Any] | None = getattr(span, _STAMP_ATTR, None)
                current = span.attributes or {}
                if stamp is not None and any(key not in current for key in stamp):
                    _restore_stamp(span, stamp)
        except Exception as exc:
            internal_error("processor.restore_stamp", exc)
        export = self._export
        if export is not None:
            try:
                export._on_ending(span)
            except Exception as exc:
                internal_error("processor.export_on_ending", exc)

    def on_end(self, span: ReadableSpan) -> None:
        export = self._export
        if export is not None:
            try:
                export.on_end(span)
            except Exception as exc:
                internal_error("processor.export_on_end", exc)

    def shutdown(self) -> None:
        export = self.swap_export(None)
        if export is not None:
            export.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        export = self._export
        return True if export is None else bool(export.force_flush(timeout_millis))


def _restore_stamp(span: Span, stamp: dict[str, Any]) -> None:
    """Re-insert the stamp into an ending span's attributes (each insert evicts the then-oldest attribute)."""
    attributes = span._attributes  # the SDK's BoundedAttributes; made immutable just before _on_ending
    was_immutable = attributes._immutable  # type: ignore[union-attr]
    attributes._immutable = False  # type: ignore[union-attr]
    try:
        for key, value in stamp.items():
            attributes[key] = value  # type: ignore[index]
    finally:
        attributes._immutable = was_immutable  # type: ignore[union-attr]
    incr("stamp_restored")
