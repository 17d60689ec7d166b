"""The continuous modes: inside an application (``configure(galtea=...)``) and inside the receiver
(``galtea-otel serve --galtea-sync``). The application's thread never waits for the platform."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider

import galtea_otel
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import start_in_thread
from galtea_otel.store import open_store
from galtea_otel.sync.outbox import open_outbox
from tests.fakes.galtea_api import FakeGaltea
from tests.sync.conftest import PRODUCT, assert_delivered_exactly_once, sync_config

Fake = tuple[FakeGaltea, str]


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    with galtea_otel.span("lookup", type="TOOL"):
        pass
    galtea_otel.record_usage(input_tokens=3, output_tokens=2, cost=0.1)
    return prompt.upper()


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_in_app_sync_sends_from_a_background_thread(fake: Fake, tmp_path: Path) -> None:
    api, url = fake
    api.add_version(PRODUCT, "2.0")
    api.delay_s = 0.3  # a slow platform
    api.fail("POST", "inferenceResults", "status", status=503, times=1)
    store_url = f"sqlite:///{tmp_path / 'app.db'}"
    provider = TracerProvider(shutdown_on_exit=False)
    galtea_otel.configure(store_url, tracer_provider=provider, galtea=sync_config(url, poll_interval_s=0.1),
                          schedule_delay_millis=10)
    try:
        # The platform answers nothing while the app runs: if any request were made on the app's thread, the
        # conversation could not finish before the platform opens again (the join is only a guard against a hang).
        api.open.clear()

        def conversations() -> None:
            for n in range(3):
                with galtea_otel.session(custom_id=f"app-{n}", version="2.0", metadata={"n": n}):
                    chat("hello")
                    chat("again")

        app = threading.Thread(target=conversations)
        app.start()
        app.join(60)
        finished, answered = not app.is_alive(), list(api.requests)
        api.open.set()
        app.join()
        assert finished and answered == []  # six turns done while the platform had answered no request
        assert galtea_otel.flush()
        assert any(t.name == "galtea-otel-sync" for t in threading.enumerate())
        _wait(lambda: sum(s["status"] == "COMPLETED" for s in api.sessions.values()) == 3)
        store = open_store(store_url)
        _wait(lambda: open_outbox(store).overview().pending == 0)
        assert_delivered_exactly_once(api, store)
        store.close()
    finally:
        galtea_otel.shutdown()
    assert not any(t.name == "galtea-otel-sync" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("assemble", ["inline", "deferred"])
def test_the_receiver_runs_the_sync_worker(fake: Fake, tmp_path: Path, assemble: str) -> None:
    """With deferred assembly, the assembler process enqueues the session, the receiver's worker sends it."""
    api, url = fake
    api.add_version(PRODUCT, "3.0")
    api.fail("POST", "sessions", "status", status=429, retry_after="0", times=2)
    store_url = f"sqlite:///{tmp_path / 'receiver.db'}"
    options = ServeOptions(store_url=store_url, http=Address("127.0.0.1", 0), grpc=None, sweep_interval=3600.0,
                           shutdown_grace=5.0, assemble=assemble)
    with start_in_thread(options, galtea=sync_config(url, poll_interval_s=0.1)) as receiver:
        assert receiver.sync_worker is not None and receiver.sync_worker.is_alive()
        assert receiver.http_address is not None
        provider = TracerProvider(shutdown_on_exit=False)
        exporter = HttpExporter(endpoint=f"http://127.0.0.1:{receiver.http_address.port}/v1/traces")
        galtea_otel.configure(tracer_provider=provider, exporter=exporter, schedule_delay_millis=10)
        try:
            with galtea_otel.session(custom_id="remote-1", version="3.0"):
                chat("via the receiver")
            assert galtea_otel.flush()
        finally:
            galtea_otel.shutdown()
        _wait(lambda: [s["status"] for s in api.sessions.values()] == ["COMPLETED"])
        store = receiver.pipeline.store  # type: ignore[union-attr]
        _wait(lambda: open_outbox(store).overview().pending == 0)
        assert_delivered_exactly_once(api, store)
    assert not receiver.sync_worker.is_alive()
