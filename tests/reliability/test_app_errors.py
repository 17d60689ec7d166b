"""RELIABILITY 18: an exception inside the application's code always propagates unchanged (and is recorded);
an exception inside galtea-otel (a store that cannot be opened, an exporter that raises or hangs) never reaches
the application: the application's calls return their own results, flush() and shutdown() answer False
instead of raising, and the failures are counted in galtea_otel.stats() and logged."""

from __future__ import annotations

import logging
import sqlite3
import threading
import traceback
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import galtea_otel
from tests.reliability.apps.instrumented import instrumented


class AppError(Exception):
    pass


@galtea_otel.inference(name="chat", model="fake-1")
def chat(prompt: str, fail: AppError | None = None) -> str:
    if fail is not None:
        raise fail
    return prompt.upper()


@galtea_otel.inference(name="async-chat", model="fake-1")
async def async_chat(fail: AppError) -> str:
    raise fail


@galtea_otel.inference(name="stream", model="fake-1")
def stream(fail: AppError) -> Iterator[str]:
    yield "partial "
    raise fail


@galtea_otel.inference(name="async-stream", model="fake-1")
async def async_stream(fail: AppError) -> AsyncIterator[str]:
    yield "partial "
    raise fail


def raised_at(exc: BaseException) -> str:
    return traceback.extract_tb(exc.__traceback__)[-1].name


async def test_application_exceptions_propagate_unchanged_and_are_recorded(tmp_path: Path) -> None:
    with instrumented(tmp_path / "app.db") as app:
        errors = [AppError(f"boom {i}") for i in range(5)]
        with pytest.raises(AppError) as caught, galtea_otel.session(custom_id="s0", version="1"):
            chat("x", errors[0])
        assert caught.value is errors[0] and raised_at(caught.value) == "chat"
        with galtea_otel.session(custom_id="s1", version="1"):
            with pytest.raises(AppError) as caught:
                await async_chat(errors[1])
            assert caught.value is errors[1] and raised_at(caught.value) == "async_chat"
            with pytest.raises(AppError) as caught:
                list(stream(errors[2]))
            assert caught.value is errors[2] and raised_at(caught.value) == "stream"
            with pytest.raises(AppError) as caught:
                async for _ in async_stream(errors[3]):
                    pass
            assert caught.value is errors[3] and raised_at(caught.value) == "async_stream"
            with pytest.raises(AppError) as caught, galtea_otel.span("step", type="TOOL"):
                raise errors[4]
            assert caught.value is errors[4]
        app.flush()
        assert app.sessions() == [("s0", "FAILED", 1), ("s1", "COMPLETED", 3)]
        assert app.query("SELECT error FROM sessions WHERE custom_id = 's0'") == [("AppError: boom 0",)]
        assert app.query("SELECT name, status, error FROM spans WHERE name LIKE '%stream' ORDER BY name") == [
            ("async-stream", 2, "AppError: boom 3"), ("stream", 2, "AppError: boom 2")]
        assert galtea_otel.stats().get("internal_errors", 0) == 0


def conversation() -> list[str]:
    """What the application does; each call's own result must come back whatever galtea-otel meets."""
    with galtea_otel.session(custom_id="c", version="1"):
        return [chat(f"m{i}") for i in range(3)]


@pytest.mark.parametrize("store", ["another application's SQLite file", "a folder removed after configure()"])
def test_a_store_that_cannot_be_opened_never_reaches_the_application(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, store: str
) -> None:
    """Stores that pass configure()'s checks and fail in the export thread, where galtea-otel opens them."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "sessions.db"
    if store == "another application's SQLite file":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with instrumented(tmp_path / "unused.db", store=f"sqlite:///{path}"):
        if store == "a folder removed after configure()":
            folder.rmdir()
        assert conversation() == ["M0", "M1", "M2"]
        assert galtea_otel.flush(timeout_s=30) is False  # said, not raised
    counters = galtea_otel.stats()
    assert counters["export_failures"] >= 1 and counters["spans_lost"] == 5
    assert any("could not store 5 spans" in r.getMessage() for r in caplog.records)  # reported, not silent
    if store == "another application's SQLite file":
        with sqlite3.connect(path) as conn:  # untouched
            assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]


class Raising(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("exporter bug")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        raise RuntimeError("exporter bug")

    def shutdown(self) -> None:
        raise RuntimeError("exporter bug")


class Hanging(SpanExporter):
    """A backend that never answers (until released at the end of the test)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(60)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        pass


def test_an_exporter_that_raises_never_reaches_the_application(caplog: pytest.LogCaptureFixture) -> None:
    galtea_otel.stats.reset()
    galtea_otel.configure(tracer_provider=TracerProvider(shutdown_on_exit=False), exporter=Raising())
    try:
        assert conversation() == ["M0", "M1", "M2"]
        assert galtea_otel.flush(timeout_s=30) is False
    finally:
        assert galtea_otel.shutdown(timeout_s=30) is True  # nothing was left to export (and fail)
    counters = galtea_otel.stats()
    assert counters["internal_errors.export"] >= 1 and counters["spans_export_failed"] == 5
    assert counters["internal_errors.export.shutdown"] == 1
    assert any(r.name == "galtea_otel" and "internal error at export" in r.getMessage() for r in caplog.records)


def test_an_exporter_that_hangs_never_blocks_the_application(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    galtea_otel.stats.reset()
    hanging = Hanging()
    galtea_otel.configure(tracer_provider=TracerProvider(shutdown_on_exit=False), exporter=hanging,
                          max_queue_size=16)
    try:
        assert conversation() == ["M0", "M1", "M2"]
        assert galtea_otel.flush(timeout_s=0.5) is False  # the export thread is stuck, not the application
        with galtea_otel.session(custom_id="more", version="1"):
            assert [chat(f"n{i}") for i in range(40)] == [f"N{i}" for i in range(40)]  # the queue fills: drops
        assert galtea_otel.shutdown(timeout_s=0.5) is False
    finally:
        hanging.release.set()
    counters = galtea_otel.stats()
    # 47 spans: the first 5 are stuck in the exporter, 16 waited in the queue until shutdown, 26 found it full.
    assert (counters["spans_dropped.queue_full"], counters["spans_dropped.shutdown"]) == (26, 16)
    assert any("galtea-otel dropped" in r.getMessage() for r in caplog.records)
