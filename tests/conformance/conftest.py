"""A fake OpenAI server and a real receiver (HTTP on a free port, tmp SQLite store) for each conformance test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import open_store
from galtea_otel.store.base import Store
from tests.fakes.openai_server import FakeOpenAI

# No app sets a version: every session must get the receiver's default.
DEFAULT_VERSION = "conformance-default-1"
SETTINGS = PipelineSettings(default_version=DEFAULT_VERSION)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'conformance.db'}")
    yield opened
    opened.close()


@pytest.fixture
def pipeline(store: Store) -> Pipeline:
    return Pipeline(store, SETTINGS)


@pytest.fixture
def receiver(pipeline: Pipeline) -> Iterator[Receiver]:
    options = ServeOptions(http=Address("127.0.0.1", 0), grpc=None, sweep_interval=3600.0, shutdown_grace=10.0,
                           settings=SETTINGS)
    with start_in_thread(options, pipeline) as running:
        yield running
