"""Issue 4 point 3, the application's side: the export queue is bounded; when the exporter is slower than the
application, spans are dropped, and every drop is counted (``galtea_otel.stats()["spans_dropped"]``) and
reported (a warning with the counts, at most once per interval, and at shutdown): spans ended = spans exported
+ spans dropped, exactly."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import galtea_otel
from galtea_otel.instrument import processor
from galtea_otel.store import open_store
from tests.reliability.apps.instrumented import EndCounter

QUEUE = 32


class Slow(SpanExporter):
    """A backend slower than the application: 20 ms per batch. Records the id of every span it got."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        time.sleep(0.02)
        with self.lock:
            self.received.extend(s.context.span_id for s in spans if s.context is not None)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@galtea_otel.inference(name="chat", model="fake-1")
def chat(prompt: str) -> str:
    return prompt


def produce(threads: int, sessions: int, turns: int) -> None:
    def work(t: int) -> None:
        for s in range(sessions):
            with galtea_otel.session(custom_id=f"bp-{t}-{s}", version="1"):
                for turn in range(turns):
                    chat(f"{turn}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def dropped_in(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The counts of the drop reports logged so far."""
    found = [re.match(r"galtea-otel dropped (\d+) spans", r.getMessage()) for r in caplog.records]
    return [int(m.group(1)) for m in found if m]


@pytest.fixture
def slow_app(caplog: pytest.LogCaptureFixture) -> tuple[Slow, EndCounter]:
    caplog.set_level(logging.WARNING, logger="galtea_otel")
    galtea_otel.stats.reset()
    provider = TracerProvider(shutdown_on_exit=False)
    ended = EndCounter()
    provider.add_span_processor(ended)
    slow = Slow()
    galtea_otel.configure(tracer_provider=provider, exporter=slow, max_queue_size=QUEUE)
    assert galtea_otel.stats()["spans_dropped"] == 0  # there from the start
    return slow, ended


def test_drops_are_counted_exactly_and_reported(
    slow_app: tuple[Slow, EndCounter], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor, "DROP_REPORT_INTERVAL_S", 3600.0)  # one report during the burst, one at the end
    slow, ended = slow_app
    produce(threads=4, sessions=5, turns=48)  # 4 x 5 x 50 = 1,000 spans, far faster than 20 ms per 32 spans
    assert galtea_otel.flush(timeout_s=30)
    started = sum(ended.ends.values())
    dropped = galtea_otel.stats()["spans_dropped"]
    assert started == 1000
    assert dropped > 0 and len(slow.received) > 0
    assert len(slow.received) == len(set(slow.received))  # nothing exported twice
    assert started == len(slow.received) + dropped  # every span: exported or counted as dropped
    assert galtea_otel.stats()["spans_dropped.queue_full"] == dropped
    assert len(dropped_in(caplog)) == 1  # the first drop was reported at once; the rest waits for the interval

    assert galtea_otel.shutdown(timeout_s=30)
    reports = dropped_in(caplog)
    assert len(reports) == 2 and sum(reports) == dropped  # the shutdown reported what was left unreported
    assert f"{dropped} in total" in caplog.records[-1].getMessage()


def test_each_interval_gets_at_most_one_report(
    slow_app: tuple[Slow, EndCounter], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor, "DROP_REPORT_INTERVAL_S", 0.0)  # an interval already over at every drop
    produce(threads=1, sessions=2, turns=98)
    assert galtea_otel.flush(timeout_s=30)
    dropped = galtea_otel.stats()["spans_dropped"]
    reports = dropped_in(caplog)
    assert dropped > 1 and len(reports) > 1 and sum(reports) == dropped
    assert galtea_otel.shutdown(timeout_s=30)
    assert sum(dropped_in(caplog)) == dropped  # nothing left to report: no report of 0 at shutdown


def test_the_sdk_queue_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16")
    provider = TracerProvider(shutdown_on_exit=False)
    galtea_otel.configure(tracer_provider=provider, exporter=Slow())
    try:
        export = galtea_otel.config._active_processor().export  # type: ignore[union-attr]
        assert isinstance(export, processor.BatchExport)
        assert (export.max_queue_size, export.max_export_batch_size) == (64, 16)
        galtea_otel.configure(tracer_provider=provider, exporter=Slow(), max_queue_size=8)  # the argument wins
        export = galtea_otel.config._active_processor().export  # type: ignore[union-attr]
        assert (export.max_queue_size, export.max_export_batch_size) == (8, 8)  # type: ignore[union-attr]
    finally:
        galtea_otel.shutdown()


def test_the_store_exporter_takes_bigger_batches_unless_the_sdk_variable_says(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Into the store, up to 4,096 spans a transaction (each session a batch touches costs about once); to another
    exporter the SDK's 512; ``$OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` wins over both. Only a busy queue fills a batch: a
    quiet one is exported every ``schedule_delay_millis``, so the first turn is stored without waiting for more."""
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    provider = TracerProvider(shutdown_on_exit=False)
    try:
        galtea_otel.configure(tracer_provider=provider, store=f"sqlite:///{tmp_path / 'a.db'}",
                              schedule_delay_millis=50)
        export = galtea_otel.config._active_processor().export  # type: ignore[union-attr]
        assert isinstance(export, processor.BatchExport) and export.max_export_batch_size == 4096
        with galtea_otel.session(custom_id="quiet", version="1"):
            with galtea_otel.span("chat", type="GENERATION") as chat:
                chat.set_input("hi")
                chat.set_output("hello")
            deadline = time.monotonic() + 30
            store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
            try:
                while time.monotonic() < deadline:  # stored by the schedule, the session still open
                    found = store.list_sessions(limit=10)
                    if found and found[0].turn_count == 1:
                        break
                    time.sleep(0.05)
                assert found and found[0].turn_count == 1 and found[0].status == "PENDING"
            finally:
                store.close()
        galtea_otel.configure(tracer_provider=provider, exporter=Slow())
        export = galtea_otel.config._active_processor().export  # type: ignore[union-attr]
        assert export.max_export_batch_size == 512  # type: ignore[union-attr]
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")
        galtea_otel.configure(tracer_provider=provider, store=f"sqlite:///{tmp_path / 'b.db'}")
        export = galtea_otel.config._active_processor().export  # type: ignore[union-attr]
        assert export.max_export_batch_size == 100  # type: ignore[union-attr]
    finally:
        galtea_otel.shutdown()


class Held(SpanExporter):
    """A backend that holds its first export() until released: the queue behind it fills up."""

    def __init__(self) -> None:
        self.release, self.entered = threading.Event(), threading.Event()
        self.received = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(30)
        self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_the_queue_is_bounded_in_bytes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans carrying big captured values fill the byte bound long before the span bound: at most
    ``GALTEA_OTEL_MAX_QUEUE_BYTES`` of them wait (a lone span bigger than the bound still goes through), and
    every span is still exported or counted as dropped."""
    monkeypatch.setenv("GALTEA_OTEL_MAX_QUEUE_BYTES", str(1024 * 1024))
    galtea_otel.stats.reset()
    provider = TracerProvider(shutdown_on_exit=False)
    held = Held()
    galtea_otel.configure(tracer_provider=provider, exporter=held, schedule_delay_millis=10)
    try:
        export = galtea_otel.config._active_processor().export  # type: ignore[union-attr]
        assert isinstance(export, processor.BatchExport) and export.max_queue_bytes == 1024 * 1024
        assert export.max_queue_size == processor.DEFAULT_MAX_QUEUE_SIZE == 8192
        chat("x" * 2_000_000)  # bigger than the whole bound: alone in the queue, it is taken
        assert held.entered.wait(10)  # the worker holds it inside export(); the queue is empty again
        big = "y" * 30_000  # captured as input and output: ~60 KB a span, ~17 of them fit in 1 MiB
        for _ in range(100):
            chat(big)
        queued = len(export._queue)
        assert 10 <= queued <= 1024 * 1024 // 60_000 + 1  # the bytes decided, not the 8,192 spans
        assert galtea_otel.stats()["spans_dropped.queue_full"] == 100 - queued
        held.release.set()
        assert galtea_otel.flush(timeout_s=30)
        assert held.received == 1 + queued
        assert export._queued_bytes == 0  # what the bound counts leaves with the spans
        chat(big)  # room again
        assert galtea_otel.flush(timeout_s=30) and held.received == 2 + queued
    finally:
        galtea_otel.shutdown()
