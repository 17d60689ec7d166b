"""Fixtures of the receiver reliability tests: PostgreSQL schemas of their own, real SDK spans in bulk, and an
HTTP session that records every status the real OTLP exporter got (the exporter itself only says
SUCCESS / FAILURE, and hides its retries)."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
import requests
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from galtea_otel import attributes as A
from tests.needs import unavailable

PG_URL = os.environ.get("GALTEA_OTEL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)


def require_postgres() -> None:
    """Skip without a reachable PostgreSQL, except under CI (``CI`` set), where that is a failure."""
    try:
        with _pg_admin() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        message = f"PostgreSQL at {PG_URL} is not reachable: {exc}"
        unavailable(message)


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema (dropped after the test): ``(store URL, schema name)``."""
    with fresh_pg_schema() as made:
        yield made


@contextmanager
def fresh_pg_schema() -> Iterator[tuple[str, str]]:
    """A PostgreSQL schema of its own for the block, dropped after it: ``(store URL, schema name)``."""
    require_postgres()
    schema = f"galtea_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}', safe='')}", schema
    finally:
        with _pg_admin() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pg_count(schema: str, table: str) -> int:
    with _pg_admin() as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()
        return int(row[0])


class RecordingSession(requests.Session):
    """A ``requests`` session for the real OTLP exporter that counts every HTTP status it received."""

    def __init__(self, statuses: Counter[int], lock: threading.Lock) -> None:
        super().__init__()
        self.statuses = statuses
        self._lock = lock

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(*args, **kwargs)
        with self._lock:
            self.statuses[response.status_code] += 1
        return response


def recording_sessions() -> tuple[Counter[int], Callable[[], RecordingSession]]:
    """A shared status counter and a factory of sessions feeding it."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    return statuses, lambda: RecordingSession(statuses, lock)


def sessions_of_spans(sessions: int, spans_per_session: int = 20, *, prefix: str = "rel") -> list[ReadableSpan]:
    """Real SDK spans: each session is 2 traces of ``spans_per_session // 2`` spans; only each trace's root
    carries the session key (a plain request span, so that each LLM call is a turn of its own); under it, LLM
    calls (the turns) each with a tool child, and one retriever span.
    A session of 20 spans has 8 turns."""
    per_trace = spans_per_session // 2
    assert per_trace >= 2 and per_trace % 2 == 0 and spans_per_session % 2 == 0
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "reliability"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.reliability")
    for s in range(sessions):
        key = {A.SESSION_CUSTOM_ID: f"{prefix}-{s:05d}", A.SESSION_VERSION: "1"}
        for t in range(2):
            with tracer.start_as_current_span(f"request {t}", attributes={**key, A.SPAN_TYPE: "SPAN"}):
                with tracer.start_as_current_span("retrieve", attributes={A.SPAN_TYPE: "RETRIEVER"}):
                    pass
                for turn in range((per_trace - 2) // 2):
                    attrs: dict[str, AttributeValue] = {
                        A.SPAN_TYPE: A.TYPE_GENERATION,
                        A.GEN_AI_REQUEST_MODEL: "gpt-4o",
                        A.GEN_AI_INPUT_TOKENS: 10,
                        A.GEN_AI_OUTPUT_TOKENS: 5,
                        A.SPAN_INPUT: f"question {t}.{turn}",
                        A.SPAN_OUTPUT: f"answer {t}.{turn}",
                    }
                    with (
                        tracer.start_as_current_span("chat", kind=SpanKind.CLIENT, attributes=attrs),
                        tracer.start_as_current_span("tool", attributes={A.SPAN_TYPE: "TOOL"}),
                    ):
                        pass
    provider.shutdown()
    spans = list(exporter.get_finished_spans())
    assert len(spans) == sessions * spans_per_session
    return spans
