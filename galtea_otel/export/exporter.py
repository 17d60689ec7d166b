"""``SessionExporter``: an OpenTelemetry ``SpanExporter`` that writes session records to a store.

Use it on any ``BatchSpanProcessor``; it runs on the processor's export thread, never on the application's.

Every span handed to :meth:`SessionExporter.export` is counted exactly once in ``galtea_otel.stats()``:
``spans_exported`` (stored now), ``spans_duplicates`` (already stored: a re-export), ``spans_rejected`` (invalid
ids) or ``spans_lost`` (the store failed, or the exporter was shut down). The periodic idle sweep runs after the
batch is committed; its failure is counted as ``sweep_failures`` (and logged once), never as lost spans: the
batch is stored and the export succeeded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from galtea_otel.decode.sdk import from_sdk
from galtea_otel.instrument.testcases import registered_test_cases, registry_generation
from galtea_otel.pipeline import Pipeline
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import Store, StoreError, open_store
from galtea_otel.translate.row import DEFAULT_PROJECT
from galtea_otel.translate.translator import Redactor

log = logging.getLogger("galtea_otel")
SWEEP_EVERY_S = 30.0


def _count(name: str, amount: int = 1) -> None:
    from galtea_otel.stats import incr

    incr(name, amount)


def _call(method: weakref.WeakMethod) -> None:  # type: ignore[type-arg]
    bound = method()
    if bound is not None:
        bound()


class SessionExporter(SpanExporter):
    """Translate finished spans into session records and commit them to ``store``.

    ``store``: a ``Store``, a store URL, or None for ``GALTEA_OTEL_STORE`` / ``sqlite:///galtea_sessions.db``.
    The store is opened on first export (on the export thread), so constructing this does no I/O.
    """

    # Spans per export (``configure``'s default for this exporter, ``$OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` wins): one
    # transaction each, where every session the batch touches costs about once (its row, its aggregates, the
    # index pages of its turns), so a bigger batch costs less a span. Only a busy queue fills it: a quiet one is
    # exported every ``schedule_delay_millis`` as before. bench_export.py: 250 concurrent sessions cost 1.9x the
    # OTLP encoding's CPU with 512, about 1.5x with 4096 to 8192.
    export_batch_size = 4096

    def __init__(
        self,
        store: str | Store | None = None,
        settings: PipelineSettings | None = None,
        *,
        redact: Redactor | None = None,
        project: str | None = None,
    ) -> None:
        self._store_arg = store
        self.project = project or DEFAULT_PROJECT  # issue 12: the project this application's sessions belong to
        self._settings = settings or PipelineSettings()
        self._redact = redact
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self._failed_once = False
        self._sweep_failed_once = False
        self._shutdown = False
        self._busy = 0  # exports running: shutdown() leaves the store open until they end
        self._test_cases_generation = 0
        self.evaluators: Any = None  # issue 11: a galtea_otel.evaluate.runner.EvaluationRunner (configure())

        # A forked child (gunicorn --preload, multiprocessing) must not share the parent's database connections:
        # it opens its own store on its first export.
        if hasattr(os, "register_at_fork"):
            forget = weakref.WeakMethod(self._forget_store_after_fork)  # the hook must not keep us alive
            os.register_at_fork(after_in_child=lambda: _call(forget))

    def _forget_store_after_fork(self) -> None:
        self._lock = threading.Lock()
        if isinstance(self._store_arg, (str, type(None))):
            self._pipeline = None

    @property
    def pipeline(self) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                store = self._store_arg if not isinstance(self._store_arg, (str, type(None))) \
                    else open_store(self._store_arg)
                self._pipeline = self._make_pipeline(store)
                if self.evaluators is not None:  # issue 11: evaluate sessions as they end
                    self.evaluators.attach(self._pipeline)
            return self._pipeline

    def _make_pipeline(self, store: Store) -> Pipeline:
        """The pipeline this exporter writes through (a subclass adds the platform sync here)."""
        return Pipeline(store, self._settings, redact=self._redact)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._shutdown:
                _count("spans_lost", len(spans))
                return SpanExportResult.FAILURE
            self._busy += 1
        try:
            return self._export(spans)
        finally:
            with self._lock:
                self._busy -= 1
                close = self._shutdown and not self._busy
            if close:  # shutdown() came while this export ran: the store is closed now that it is done
                self._close_store()

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            pipeline = self.pipeline
            self._store_test_cases(pipeline)
            # One span at a time: each SpanData is translated and dropped, not all held while the batch is
            # stored (fewer live objects: fewer garbage collections on the export thread).
            result = pipeline.ingest(map(from_sdk, spans), self.project)
            _count("spans_exported", result.accepted)
            if result.duplicates:
                _count("spans_duplicates", result.duplicates)
            if self.evaluators is not None:
                self.evaluators.wake()
            if result.rejected:
                _count("spans_rejected", result.rejected)
        except Exception as exc:
            _count("export_failures")
            _count("spans_lost", len(spans))
            if not self._failed_once:
                self._failed_once = True
                # A store that cannot be opened (wrong file, corrupt, foreign...) is one clear line; anything else
                # is unexpected: its traceback helps.
                log.error("galtea-otel could not store %d spans: %s (later failures are only counted: "
                          "galtea_otel.stats()['export_failures'], ['spans_lost'])", len(spans), exc,
                          exc_info=not isinstance(exc, StoreError))
            else:
                log.debug("galtea-otel could not store %d spans: %s", len(spans), exc)
            return SpanExportResult.FAILURE
        now = time.monotonic()
        if now - self._last_sweep > SWEEP_EVERY_S:
            self._last_sweep = now
            self._sweep(pipeline)
        return SpanExportResult.SUCCESS

    def _sweep(self, pipeline: Pipeline) -> None:
        """The idle sweep, after a committed batch: its failure is its own counted error, not a loss of spans."""
        try:
            pipeline.sweep()
        except Exception as exc:
            _count("sweep_failures")
            if not self._sweep_failed_once:
                self._sweep_failed_once = True
                log.error("galtea-otel: the idle sweep failed: %s (the spans exported are stored; later sweep "
                          "failures are only counted: galtea_otel.stats()['sweep_failures'])", exc,
                          exc_info=not isinstance(exc, StoreError))
            else:
                log.debug("galtea-otel: the idle sweep failed: %s", exc)

    def _store_test_cases(self, pipeline: Pipeline) -> None:
        """Copy the test cases registered in this process to the store (on this thread, when they change), so
        that readers of the store (the CLI, the sync) see them too."""
        generation = registry_generation()
        if generation != self._test_cases_generation:
            pipeline.store.put_test_cases(registered_test_cases())
            self._test_cases_generation = generation

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        if self.evaluators is not None:  # issue 11: run what is due, within the runner's shutdown timeout
            self.evaluators.stop()
        with self._lock:
            self._shutdown = True
            busy = self._busy
        if not busy:  # else the running export closes it when it ends (closing under it would fail it)
            self._close_store()

    def _close_store(self) -> None:
        with self._lock:
            pipeline, owned = self._pipeline, isinstance(self._store_arg, (str, type(None)))
        if pipeline is not None and owned:
            pipeline.store.close()
