"""An application instrumented with galtea-otel exporting OTLP to a real receiver: the same records arrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

import galtea_otel
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import open_store


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    url = f"sqlite:///{tmp_path / 'receiver.db'}"
    options = ServeOptions(store_url=url, http=Address("127.0.0.1", 0), grpc=Address("127.0.0.1", 0),
                           sweep_interval=3600.0, shutdown_grace=10.0)
    pipeline = Pipeline(open_store(url), PipelineSettings(idle_close_minutes=1))
    with start_in_thread(options, pipeline) as running:
        yield running


def _exporter(receiver: Receiver, protocol: str) -> SpanExporter:
    if protocol == "http":
        assert receiver.http_address is not None
        return HttpExporter(endpoint=f"http://{receiver.http_address.host}:{receiver.http_address.port}/v1/traces")
    assert receiver.grpc_address is not None
    return GrpcExporter(endpoint=f"{receiver.grpc_address.host}:{receiver.grpc_address.port}", insecure=True)


@pytest.fixture(params=["http", "grpc"])
def app(request: pytest.FixtureRequest, receiver: Receiver) -> Iterator[Receiver]:
    provider = TracerProvider(shutdown_on_exit=False)
    galtea_otel.configure(tracer_provider=provider, exporter=_exporter(receiver, request.param))
    yield receiver
    galtea_otel.shutdown()


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    galtea_otel.record_usage(input_tokens=4, output_tokens=2)
    return prompt[::-1]


def _sessions(receiver: Receiver) -> list[tuple[str, str, int]]:
    store = receiver.pipeline.store  # type: ignore[union-attr]
    return [(s.custom_id, s.status, s.turn_count) for s in store.list_sessions()]


def test_a_session_is_pending_through_the_pipeline_while_it_runs_then_completed(app: Receiver) -> None:
    with galtea_otel.session(custom_id="remote", version="3.0"):
        chat("abc")
        assert galtea_otel.flush()
        assert _sessions(app) == [("remote", "PENDING", 1)]
        chat("def")
    assert galtea_otel.flush()
    assert _sessions(app) == [("remote", "COMPLETED", 2)]
    detail = read_session(app.pipeline.store, ("remote", "3.0"))  # type: ignore[union-attr]
    assert detail is not None
    assert [(t.input, t.output, t.model, t.total_tokens) for t in detail.inference_results] == [
        ("abc", "cba", "fake-1", 6), ("def", "fed", "fake-1", 6)]


def test_one_request_per_message_then_end_session(app: Receiver) -> None:
    """A production web app: no session block, every user message its own trace; end_session closes it."""
    for message in ("one", "two", "three"):
        with galtea_otel.span("handle-request", type="CHAIN"), \
                galtea_otel.continue_session(custom_id="web-7", version="5"):  # a fresh trace per message
            chat(message)
    assert galtea_otel.flush()
    assert _sessions(app) == [("web-7", "PENDING", 3)]
    galtea_otel.end_session("web-7", "5", error="user left angry")
    assert galtea_otel.flush()
    summary = app.pipeline.store.list_sessions()[0]  # type: ignore[union-attr]
    assert (summary.status, summary.error, summary.turn_count) == ("FAILED", "user left angry", 3)
