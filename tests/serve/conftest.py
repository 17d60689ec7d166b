"""A real receiver on free 127.0.0.1 ports over a real Pipeline and SQLite file; plain HTTP helpers."""

from __future__ import annotations

import http.client
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.pipeline import IngestResult, Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.spandata import SpanData
from galtea_otel.store import open_store
from galtea_otel.store.sqlite import SQLiteStore

LOCAL = Address("127.0.0.1", 0)
BASE_OPTIONS = ServeOptions(http=LOCAL, grpc=LOCAL, sweep_interval=3600.0, shutdown_grace=10.0)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def post(
    receiver: Receiver,
    body: bytes,
    content_type: str | None = "application/x-protobuf",
    *,
    path: str = "/v1/traces",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> Response:
    """One request with a plain HTTP client (http.client: no retries, nothing hidden)."""
    assert receiver.http_address is not None
    conn = http.client.HTTPConnection(receiver.http_address.host, receiver.http_address.port, timeout=60)
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    try:
        if chunked:
            conn.request(
                method,
                path,
                body=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
                headers=all_headers,
                encode_chunked=True,
            )
        else:
            conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def span_count(store_url: str) -> int:
    """Spans stored, read straight from the SQLite file by a separate connection (only committed rows)."""
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])


class GatedPipeline:
    """The real pipeline behind a gate: ``ingest`` waits for ``gate`` to open (``entered``: it got there).
    Makes a receiver slow on demand, to observe overload and shutdown behaviour."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.gate = threading.Event()
        self.entered = threading.Event()

    def ingest(self, spans: Sequence[SpanData]) -> IngestResult:
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.pipeline.ingest(spans)

    def sweep(self) -> dict[str, int]:
        return {}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'receiver.db'}"


# A store that fails for real: its write lock held by another connection (the gRPC traces and logs handlers).
@pytest.fixture
def locked_store(store_url: str) -> Iterator[tuple[Pipeline, sqlite3.Connection]]:
    """The real SQLite store with a 100 ms busy timeout, and a second connection to hold its write lock."""
    store = SQLiteStore(store_url, busy_timeout_ms=100)
    holder = sqlite3.connect(Path(store_url.removeprefix("sqlite:///")), isolation_level=None)
    try:
        yield Pipeline(store), holder
    finally:
        holder.close()
        store.close()



@pytest.fixture
def pipeline(store_url: str) -> Iterator[Pipeline]:
    store = open_store(store_url)
    yield Pipeline(store)
    store.close()


ReceiverFactory = Callable[..., AbstractContextManager[Receiver]]


@pytest.fixture
def make_receiver(pipeline: Pipeline) -> ReceiverFactory:
    """``with make_receiver(max_body_bytes=...) as receiver:`` a receiver over the test's real pipeline."""

    def make(ingestor: Any = None, **changes: Any) -> AbstractContextManager[Receiver]:
        return start_in_thread(
            replace(BASE_OPTIONS, **changes), ingestor if ingestor is not None else pipeline
        )

    return make


@pytest.fixture
def receiver(make_receiver: ReceiverFactory) -> Iterator[Receiver]:
    with make_receiver() as running:
        yield running
