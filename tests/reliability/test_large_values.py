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
    # The newest attributes are kept: the turn's input is the last user message.
    assert detail.inference_results[0].input == "message 99"


def test_a_5_mb_prompt_is_stored_truncated_as_valid_json_with_a_marker(store_url: str) -> None:
    @galtea_otel.inference
    def chat(documents: list[dict[str, str]]) -> str:
        return "ok"

    huge = [{"role": "doc", "text": "x" * 1000} for _ in range(5 * 1024)]  # about 5 MB as JSON, not messages
    with galtea_otel.session(custom_id="big", version="1"):
        chat(huge)
    assert galtea_otel.flush()
    detail = read_session(open_store(store_url), ("big", "1"))
    assert detail is not None
    stored = detail.inference_results[0].input or ""
    assert len(stored.encode()) <= 64 * 1024 + 1024
    value = json.loads(stored)  # still valid JSON
    assert value["galtea.truncated"] is True and value["preview"].startswith('[{"role":"doc","text":"xxx')
    assert detail.inference_results[0].output == "ok"


def test_a_5_mb_message_history_keeps_the_user_message_and_a_bounded_record(store_url: str) -> None:
    @galtea_otel.inference
    def chat(messages: list[dict[str, str]]) -> str:
        return "ok"

    history = [{"role": "user", "content": f"{i} " + "x" * 1000} for i in range(5 * 1024)]  # about 5 MB
    with galtea_otel.session(custom_id="big-history", version="1"):
        chat(history)
    assert galtea_otel.flush()
    detail = read_session(open_store(store_url), ("big-history", "1"))
    assert detail is not None
    turn = detail.inference_results[0]
    assert turn.input == f"{5 * 1024 - 1} " + "x" * 1000  # the last user message, whole
    assert turn.output == "ok"
    assert len(json.dumps(turn.messages).encode()) <= 2 * (64 * 1024 + 1024)  # bounded, never the 5 MB
