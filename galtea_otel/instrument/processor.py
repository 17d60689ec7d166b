"""The one span processor galtea-otel adds to a TracerProvider: stamping, then export.

**Stamping.** ``on_start`` copies the current session's stamp (``galtea.session.custom_id``,
``galtea.session.version``, ``gen_ai.conversation.id``, ``session.id``) from the span's parent Context onto
every span that starts inside a session, whichever library started it. It writes them first, so they are the
span's oldest attributes.

**The 128-attribute limit.** The SDK's ``BoundedAttributes`` evicts the *oldest* attribute when a span exceeds
its limit (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT``, default 128), so the stamped keys would be the first to go.
The public API cannot set an attribute on an ending span, so ``_on_ending`` (the SDK's hook that runs just
before a span becomes read-only) re-inserts the stamp into the span's attribute map when some of it was
evicted (counted as ``stamp_restored``), together with the attributes present at span start that tell the
span's kind (an LLM call, a tool...), which the same eviction would take next. Should a future SDK change
those internals, the failure is counted and the translator still finds the session from the span's ancestors
or its trace (SESSION_MODEL section 2).

**Export.** The inner export processor (a :class:`BatchExport` around the session exporter or any
``SpanExporter``) can be swapped by a later ``configure()``: one ``GalteaSpanProcessor`` is ever registered per
provider.

**BatchExport** replaces the SDK's ``BatchSpanProcessor``, whose full queue evicts spans silently, whose
``force_flush`` ignores its timeout and whose ``shutdown`` can wait on the exporter's retries. Its queue is
bounded in spans (``max_queue_size``) and in bytes (``max_queue_bytes``, estimated by :func:`span_bytes`: a span's
string values plus ~1 KiB, so spans carrying big captured values cannot hold hundreds of MiB); a span that finds
it full is dropped and *counted*: ``spans_dropped`` (and
``spans_dropped.queue_full`` / ``spans_dropped.shutdown``) in ``galtea_otel.stats()``, and a warning with the
counts at most once per ``DROP_REPORT_INTERVAL_S`` and once more at shutdown. The batch still inside the
exporter when the shutdown timeout expires is counted as ``spans_unconfirmed`` (and logged): if that export
ends later (the process lives on), the count moves back to what the exporter reports (stored or lost), so at
any moment every span is counted once; if the process exits first, ``spans_unconfirmed`` is what never got
a verdict. One daemon thread exports, never
an application thread. ``force_flush`` and ``shutdown`` honour their timeouts: at shutdown, what is still queued
when the time is up is dropped (counted), and the exporter's ``shutdown()`` interrupts the export in progress
(the OTLP exporters stop retrying), so a process exits within the bound even when the backend is down. After
``os.fork()`` the child starts with an empty queue and its own export thread (``os.register_at_fork``), so
pre-fork servers (gunicorn ``--preload``, multiprocessing) export from every worker.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import TraceFlags

from galtea_otel.instrument.context import SESSION_KEY, make_stamp
from galtea_otel.stats import incr, internal_error
from galtea_otel.translate.conventions import LLM_MARKERS, SPAN_TYPE_SOURCES

__all__ = ["BatchExport", "GalteaSpanProcessor", "set_text_attribute"]

logger = logging.getLogger("galtea_otel")

# 8,192 spans absorb a burst of about 1.5 s at 10k spans/s above the exporter's rate (BENCHMARKS.md, "The bounded
# queue under a burst"); the bytes bound keeps a queue of spans carrying big captured values within ~32 MiB.
DEFAULT_MAX_QUEUE_SIZE = 8192
DEFAULT_MAX_QUEUE_BYTES = 32 * 1024 * 1024
SPAN_OVERHEAD_BYTES = 1024  # what a queued span holds besides its string values (measured: ~1-1.5 KiB)
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512
DEFAULT_SHUTDOWN_TIMEOUT_S = 4.0
DROP_REPORT_INTERVAL_S = 10.0

_STAMP_ATTR = "_galtea_otel_stamp"
_SAMPLED = TraceFlags.SAMPLED


def span_bytes(span: ReadableSpan) -> int:
    """About what a queued span holds: its string attribute values (span and events) plus a fixed overhead."""
    size = SPAN_OVERHEAD_BYTES
    # On the application's thread for every span: the SDK's span keeps its attributes in a BoundedAttributes
    # whose plain dict reads ~3x faster than the public read-only view of it (that view's every item goes through
    # the mapping's locked __getitem__), and its events in a BoundedList whose deque is read without the list's
    # lock and copy (``span.events`` copies it into a tuple); any other span, or a future SDK without them,
    # takes the public views.
    attributes = getattr(span, "_attributes", None)
    values = attributes._dict.values() if type(attributes) is BoundedAttributes else (span.attributes or {}).values()
    for value in values:
        if type(value) is str:
            size += len(value)
    events = getattr(span, "_events", None)
    events = events._dq if type(events) is BoundedList else span.events  # type: ignore[attr-defined]
    if events:
        for event in events:
            event_attributes = event.attributes
            if event_attributes:
                for value in event_attributes.values():
                    if type(value) is str:
                        size += len(value)
    return size


class GalteaSpanProcessor(SpanProcessor):
    """Stamps session attributes on span start and forwards every span to an (optional) export processor."""

    def __init__(self, export: SpanProcessor | None = None, exporter: object | None = None) -> None:
        self._export = export
        self._export_hooks = _hooks_of(export)
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
            self._export_hooks = _hooks_of(export)
        return old

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        try:
            # get_value(SESSION_KEY, parent_context), without its extra call: every span pays it
            stamp = (otel_context.get_current() if parent_context is None else parent_context).get(SESSION_KEY)
            if stamp is not None:
                _stamp(span, stamp)  # type: ignore[arg-type]
        except Exception as exc:
            internal_error("processor.on_start", exc)
        hooks = self._export_hooks
        if hooks[0] is not None:
            try:
                hooks[0](span, parent_context=parent_context)
            except Exception as exc:
                internal_error("processor.export_on_start", exc)

    def _on_ending(self, span: Span) -> None:
        try:
            attributes = span._attributes
            if (attributes.dropped if type(attributes) is BoundedAttributes else span.dropped_attributes):
                remembered: dict[str, Any] | None = getattr(span, _STAMP_ATTR, None)
                if remembered is not None:
                    protected = {key: value for key, value in remembered.items() if key in _PROTECTED_KEYS}
                    current = span.attributes or {}
                    if any(key not in current for key in protected):
                        _restore_stamp(span, protected)
        except Exception as exc:
            internal_error("processor.restore_stamp", exc)
        hooks = self._export_hooks
        if hooks[1] is not None:
            try:
                hooks[1](span)
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


def _hooks_of(export: SpanProcessor | None) -> tuple[Any, Any]:
    """The export processor's ``on_start`` and ``_on_ending``, None for those known to do nothing (BatchExport's):
    each is one call less on every span."""
    if export is None:
        return None, None
    if type(export) is BatchExport:
        return None, None
    return export.on_start, getattr(export, "_on_ending", None)


# The keys the translator reads to tell an LLM span or a span type (galtea_otel.translate.conventions).
_KIND_KEYS = frozenset(
    [key for key, _ in LLM_MARKERS] + [key for key, _ in SPAN_TYPE_SOURCES]
)
# What _on_ending puts back when the attribute limit evicted it: the stamp and the kind (make_stamp's keys).
_PROTECTED_KEYS = _KIND_KEYS | frozenset(make_stamp("", ""))


def _stamp(span: Span, stamp: dict[str, Any]) -> None:
    """Add the session's stamp to a starting span, and remember it (with the span's kind) for ``_on_ending``.

    Every span that starts inside a session pays this, whichever library made it, so the common case skips
    the SDK's per-value validation: when the span's attributes are the SDK's ``BoundedAttributes`` with room
    for the stamp and the stamp's values plain strings within the value-length limit (what ``make_stamp``
    makes; checked once per stamp), inserting them into its dict under its lock stores exactly what
    ``span.set_attributes(stamp)`` would: the SDK moves a key it already holds to the end, and so does the
    fix-up below when the dict grew by less than the stamp (a key was there already). Anything else goes
    through ``set_attributes``.

    What is remembered is a copy of the span's attributes just after stamping (its start attributes, then the
    stamp; the stamp itself when the span started without attributes): a plain dict copy, cheaper than picking
    the kind keys out; ``_on_ending`` picks them out only on the rare span that overflowed the attribute limit.
    """
    global _plain_stamp
    attributes = span._attributes
    if type(attributes) is BoundedAttributes and not attributes._immutable and span._end_time is None:
        present = attributes._dict
        maxlen, max_value_len = attributes.maxlen, attributes.max_value_len
        plain = _plain_stamp
        if plain[0] is not stamp or plain[1] != max_value_len:
            plain = _plain_stamp = (stamp, max_value_len, all(
                type(key) is str and key and type(value) is str
                and (max_value_len is None or len(value) <= max_value_len)
                for key, value in stamp.items()))
        before = len(present)
        if plain[2] and (maxlen is None or before + len(stamp) <= maxlen):
            with attributes._lock:
                present.update(stamp)
                if len(present) != before + len(stamp):  # some key was set already: move it last, as the SDK
                    for key in stamp:
                        present[key] = present.pop(key)
                remembered = present.copy() if before else stamp  # nothing at start: the stamp, shared
            setattr(span, _STAMP_ATTR, remembered)
            incr("spans_started_in_session")
            return
    span.set_attributes(stamp)
    setattr(span, _STAMP_ATTR, {**{key: value for key, value in (span.attributes or {}).items()
                                   if key in _KIND_KEYS}, **stamp})
    incr("spans_started_in_session")


# The stamp whose values were last found plain strings within the value-length limit: (stamp, limit, ok).
_plain_stamp: tuple[dict[str, Any] | None, int | None, bool] = (None, None, False)


_SDK_SET_ATTRIBUTE = Span.set_attribute


def set_text_attribute(span: Any, key: str, text: str) -> None:
    """``span.set_attribute(key, text)`` for a text galtea-otel made (a captured input or output), without the
    SDK's per-value validation when it changes nothing: on the SDK's own ``Span`` with its ``BoundedAttributes``,
    still recording, ``key`` not set yet, room under the count limit and ``text`` within the value-length
    limit, the SDK would store ``text`` as it is under the same two locks; anything else goes through
    ``set_attribute`` (which truncates, evicts, warns or refuses as the SDK does). The SDK's tracer makes
    ``_Span``, a subclass: any class whose ``set_attribute`` is the SDK's own qualifies."""
    if type(span).set_attribute is _SDK_SET_ATTRIBUTE:
        attributes = span._attributes
        if type(attributes) is BoundedAttributes:
            max_value_len, maxlen = attributes.max_value_len, attributes.maxlen
            if max_value_len is None or len(text) <= max_value_len:
                with span._lock:
                    present = attributes._dict
                    if (span._end_time is None and not attributes._immutable and key not in present
                            and (maxlen is None or len(present) < maxlen)):
                        with attributes._lock:
                            present[key] = text
                        return
    span.set_attribute(key, text)


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


class BatchExport(SpanProcessor):
    """Ended spans wait in a bounded queue; one daemon thread hands them to ``exporter`` in batches of at most
    ``max_export_batch_size``, every ``schedule_delay_millis`` or as soon as a batch is full.

    Every sampled span that reaches :meth:`on_end` is either handed to the exporter or counted in
    ``spans_dropped`` (the queue was full, or the processor was shut down / out of time at shutdown); a batch
    the exporter refused or raised on is counted in ``spans_export_failed``.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        schedule_delay_millis: float = 1000,
        shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
    ) -> None:
        for name, value in (("max_queue_size", max_queue_size), ("max_queue_bytes", max_queue_bytes),
                            ("max_export_batch_size", max_export_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not schedule_delay_millis > 0 or not shutdown_timeout_s > 0:
            raise ValueError("schedule_delay_millis and shutdown_timeout_s must be positive")
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.max_export_batch_size = min(max_export_batch_size, max_queue_size)
        self.schedule_delay_s = schedule_delay_millis / 1000
        self.shutdown_timeout_s = shutdown_timeout_s
        incr("spans_dropped", 0)  # present in stats() from the start
        self._reset(stopped=False)
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._after_fork_in_child)

            def after_in_child() -> None:
                method = reinit()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset(self, *, stopped: bool) -> None:
        """Fresh state (at construction, and in a forked child): an empty queue, and a worker unless stopped."""
        self._lock = threading.Lock()  # on_end takes the lock itself (a C call), not the Condition's Python wrapper
        self._cond = threading.Condition(self._lock)
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()  # each queued span's estimated bytes
        self._queued_bytes = 0
        self._enqueued = 0  # spans ever queued
        self._handled = 0  # spans ever taken off the queue and through the exporter (succeeded or failed)
        self._failed_batches = 0  # batches the exporter refused or raised on
        self._exporting = 0  # spans of the batch inside the exporter right now
        self._unconfirmed = 0  # of those, counted as spans_unconfirmed (cut off by the shutdown timeout)
        self._flush_target = 0  # the worker exports without waiting until _handled reaches this
        self._stopping = stopped  # no more spans accepted; the worker drains the queue, then ends
        self._abandoned = stopped  # no more exporting at all (out of time at shutdown)
        self._unreported: dict[str, int] = {}  # drops not yet logged, by reason
        self._dropped_total = 0
        self._last_report: float | None = None  # never yet: the first drop is reported at once
        self._worker: threading.Thread | None = None
        if not stopped:
            self._worker = threading.Thread(target=self._run, name="galtea-otel-export", daemon=True)
            self._worker.start()

    def _after_fork_in_child(self) -> None:
        # The parent's queued spans are the parent's to export; its thread and locks do not exist here.
        self._reset(stopped=self._stopping)

    # --- the application's side ------------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        pass

    def _on_ending(self, span: Span) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags & _SAMPLED:
            return
        size = span_bytes(span)
        with self._lock:
            queue = self._queue
            if self._stopping:
                reason = "shutdown"
            elif len(queue) >= self.max_queue_size or (
                    self._queued_bytes + size > self.max_queue_bytes and queue):  # one span always fits
                reason = "queue_full"
            else:
                queue.append(span)
                self._sizes.append(size)
                self._queued_bytes += size
                self._enqueued += 1
                if len(queue) == self.max_export_batch_size:
                    self._cond.notify_all()
                return
        self._drop(1, reason)

    def _drop(self, count: int, reason: str, *, report: bool = True) -> None:
        incr("spans_dropped", count)
        incr("spans_dropped." + reason, count)
        with self._cond:
            self._unreported[reason] = self._unreported.get(reason, 0) + count
            self._dropped_total += count
        if report:
            self._report_drops()

    def _report_drops(self, *, force: bool = False) -> None:
        """Log the drops not yet reported: at most once per DROP_REPORT_INTERVAL_S unless ``force``."""
        now = time.monotonic()
        with self._cond:
            if not self._unreported:
                return
            if not force and self._last_report is not None and now - self._last_report < DROP_REPORT_INTERVAL_S:
                return
            counts, total, self._unreported, self._last_report = self._unreported, self._dropped_total, {}, now
        logger.warning(
            "galtea-otel dropped %d spans: %d with the export queue full (%d spans or %d MiB), %d at shutdown (not "
            "exported in time); %d in total (galtea_otel.stats()['spans_dropped'])", sum(counts.values()),
            counts.get("queue_full", 0), self.max_queue_size, self.max_queue_bytes >> 20, counts.get("shutdown", 0),
            total,
        )

    # --- the export thread -----------------------------------------------------------------------------------

    def _next_batch(self) -> list[ReadableSpan] | None:
        """Wait until a batch is due and take it off the queue; None when the worker should end."""
        with self._cond:
            due = time.monotonic() + self.schedule_delay_s
            while True:
                if self._abandoned:
                    return None
                queued = len(self._queue)
                if queued and (queued >= self.max_export_batch_size or self._stopping
                               or self._flush_target > self._handled or time.monotonic() >= due):
                    count = min(queued, self.max_export_batch_size)
                    self._queued_bytes -= sum(self._sizes.popleft() for _ in range(count))
                    return [self._queue.popleft() for _ in range(count)]
                if self._stopping:
                    return None
                remaining = due - time.monotonic()
                if remaining <= 0:
                    due = time.monotonic() + self.schedule_delay_s
                    remaining = self.schedule_delay_s
                self._cond.wait(remaining)

    def _run(self) -> None:
        while True:
            self._report_drops()
            batch = self._next_batch()
            if batch is None:
                return
            with self._cond:
                self._exporting = len(batch)
            ok = self._export(batch)
            with self._cond:
                self._handled += len(batch)
                self._failed_batches += not ok
                self._exporting = 0
                settled, self._unconfirmed = self._unconfirmed, 0
                self._cond.notify_all()
            if settled:  # the exporter has now counted them (exported, lost...): no longer unconfirmed
                incr("spans_unconfirmed", -settled)

    def _export(self, batch: Sequence[ReadableSpan]) -> bool:
        token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
        except Exception as exc:
            internal_error("export", exc)
            ok = False
        finally:
            otel_context.detach(token)
        if not ok:
            incr("spans_export_failed", len(batch))
        return ok

    # --- flush and shutdown ----------------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span queued so far. True when all went through the exporter within the timeout and no
        export failed meanwhile."""
        with self._cond:
            target, failures = self._enqueued, self._failed_batches
            if self._handled >= target:
                return True
            if self._abandoned or self._worker is None:
                return False
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._handled >= target or self._abandoned, timeout_millis / 1000)
            return self._handled >= target and self._failed_batches == failures

    def shutdown(self, timeout_s: float | None = None) -> bool:  # type: ignore[override]
        """Stop accepting spans, export what is queued within ``timeout_s`` (default ``shutdown_timeout_s``),
        drop (and count) the rest, shut the exporter down. True when everything queued went through the
        exporter in time and no export failed meanwhile."""
        deadline = time.monotonic() + (self.shutdown_timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            if self._stopping:
                return False
            failures = self._failed_batches
            self._stopping = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            drained = (worker is None or not worker.is_alive()) and self._failed_batches == failures
            self._abandoned = True
            left = len(self._queue)
            self._queue.clear()
            self._sizes.clear()
            self._queued_bytes = 0
            in_flight = self._exporting if worker is not None and worker.is_alive() else 0
            self._unconfirmed = in_flight
            if in_flight:  # counted under the lock: the worker settles it under the same lock
                incr("spans_unconfirmed", in_flight)
            self._cond.notify_all()
        if left:
            self._drop(left, "shutdown", report=False)
        if in_flight:
            logger.warning(
                "galtea-otel: %d spans were still being exported when the shutdown timeout (%.1f s) expired; they "
                "are stored only if that export completes (galtea_otel.stats()['spans_unconfirmed'])",
                in_flight, self.shutdown_timeout_s if timeout_s is None else timeout_s)
        try:  # also interrupts an export still running (the OTLP exporters stop retrying at once)
            self.exporter.shutdown()
        except Exception as exc:
            internal_error("export.shutdown", exc)
        self._report_drops(force=True)
        return drained and not left and not in_flight
