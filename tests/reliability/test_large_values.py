"""RELIABILITY 16, end to end into the store: a span with 200 message attributes keeps its session key, and a
5 MB prompt is stored truncated into valid JSON with a marker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import galtea_otel
from galtea_otel.config import current
from galtea_otel.pipeline import read_session
from galtea_otel.store import open_store


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    provider = TracerProvider(shutdown_on_exit=False)
    galtea_otel.configure(url, tracer_provider=provider)
    yield url
    galtea_otel.shutdown()


def test_a_span_with_200_message_attributes_stays_in_its_session(store_url: str) -> None:
    # An auto-instrumented client span (OpenInference style): its kind and the session key are set first, then
    # 200 message attributes push them out of the SDK's 128-attribute limit.
    tracer = current().tracer  # any tracer of the configured provider
    with galtea_otel.session(custom_id="wide", version="1"), \
            tracer.start_as_current_span("llm", attributes={"openinference.span.kind": "LLM"}) as span:
        for i in range(100):
            span.set_attribute(f"llm.input_messages.{i}.message.role", "user")
            span.set_attribute(f"llm.input_messages.{i}.message.content", f"message {i}")
    assert galtea_otel.flush()
    store = open_store(store_url)
    assert [(s.custom_id, s.turn_count) for s in store.list_sessions()] == [("wide", 1)]
    detail = read_session(store, ("wide", "1"))
    assert detail is not None
    messages = json.loads(detail.inference_results[0].input or "[]")
    assert messages[-1] == {"role": "user", "content": "message 99"}  # the newest attributes are kept


def test_a_5_mb_prompt_is_stored_truncated_as_valid_json_with_a_marker(store_url: str) -> None:
    @galtea_otel.inference
    def chat(messages: list[dict[str, str]]) -> str:
        return "ok"

    huge = [{"role": "user", "content": "x" * 1000} for _ in range(5 * 1024)]  # about 5 MB as JSON
    with galtea_otel.session(custom_id="big", version="1"):
        chat(huge)
    assert galtea_otel.flush()
    detail = read_session(open_store(store_url), ("big", "1"))
    assert detail is not None
    stored = detail.inference_results[0].input or ""
    assert len(stored.encode()) <= 64 * 1024 + 1024
    value = json.loads(stored)  # still valid JSON
    assert value["galtea.truncated"] is True and value["preview"].startswith('[{"role":"user","content":"xxx')
    assert detail.inference_results[0].output == "ok"
