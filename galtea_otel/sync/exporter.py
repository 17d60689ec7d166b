"""The in-process exporter with the Galtea sync: what ``configure(galtea=...)`` installs.

It is galtea-otel's ``SessionExporter`` whose pipeline enqueues every session it writes in the store's outbox (same
transaction), plus a :class:`~galtea_otel.sync.worker.SyncWorker` thread on the same store that sends it. The
application's thread does neither: spans are exported by the ``BatchSpanProcessor``'s thread, the sending is the
worker's.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.export.exporter import SessionExporter
from galtea_otel.pipeline import Pipeline
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import Store
from galtea_otel.sync.config import GalteaSyncConfig
from galtea_otel.sync.worker import SyncWorker
from galtea_otel.translate.translator import Redactor

STOP_TIMEOUT_S = 2.0  # at exit: what is not sent by then stays in the outbox for the next run


class SyncingSessionExporter(SessionExporter):
    def __init__(
        self,
        store: str | Store | None = None,
        settings: PipelineSettings | None = None,
        *,
        galtea: GalteaSyncConfig,
        redact: Redactor | None = None,
        project: str | None = None,
    ) -> None:
        super().__init__(store, settings, redact=redact, project=project)
        self.galtea = galtea
        self.worker: SyncWorker | None = None

    def _make_pipeline(self, store: Store) -> Pipeline:
        self.worker = SyncWorker(store, self.galtea)
        self.worker.start()
        return Pipeline(store, self._settings, redact=self._redact, sync=True)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        if self.worker is not None:
            self.worker.wake()
        return result

    def shutdown(self) -> None:
        if self.worker is not None:
            self.worker.stop(STOP_TIMEOUT_S)
        super().shutdown()
