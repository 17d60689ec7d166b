"""An application's side for the in-process reliability tests: galtea-otel configured on a TracerProvider of
its own, exporting through its real export queue and session exporter into a SQLite file, with the store read
back by a separate connection (only committed rows), and every span end counted."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

import galtea_otel


class EndCounter(SpanProcessor):
    """Counts ``on_end`` per span (name, span id): a span ended twice shows up as 2."""

    def __init__(self) -> None:
        self.ends: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        with self._lock:
            self.ends[(span.name, span.context.span_id)] += 1

    def named(self, name: str) -> list[int]:
        with self._lock:
            return [count for (n, _), count in self.ends.items() if n == name]


class App:
    def __init__(self, db: Path, provider: TracerProvider, ends: EndCounter) -> None:
        self.db = db
        self.provider = provider
        self.ends = ends

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, args).fetchall())

    def flush(self) -> None:
        assert galtea_otel.flush(timeout_s=30), "galtea-otel did not export everything within 30 s"

    def orphan_traces(self) -> int:
        """Traces stored without a session key (held, waiting for one that never comes)."""
        return int(self.query("SELECT count(DISTINCT trace_id) FROM spans WHERE custom_id IS NULL")[0][0])

    def sessions(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT custom_id, status, turn_count FROM sessions ORDER BY custom_id")


@contextmanager
def instrumented(db: Path, **configure: Any) -> Iterator[App]:
    """galtea-otel configured on a fresh provider, exporting to ``db``; shut down (flushed) at the end."""
    galtea_otel.stats.reset()
    provider = TracerProvider(shutdown_on_exit=False)
    ends = EndCounter()
    provider.add_span_processor(ends)
    configure.setdefault("store", f"sqlite:///{db}")
    galtea_otel.configure(tracer_provider=provider, **configure)
    try:
        yield App(db, provider, ends)
    finally:
        galtea_otel.shutdown(timeout_s=30)
