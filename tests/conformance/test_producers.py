"""Issue 8, point 5: each popular producer's real package, its spans through the real receiver, read right.

Every app plays ``producer_scenario.TURNS`` (a tool round trip, a streamed turn, a failed call caught by the app;
each turn its own trace) against the fake OpenAI server and exports OTLP through a capture to the receiver. The
Python producers run from virtual environments of their own and the Vercel AI SDK from pinned node_modules, both
built on first use and cached outside the repository (tests/conformance/producers.py). Marked ``producers``:
``pytest -m producers tests/conformance``. ``GALTEA_OTEL_SPAN_DUMPS=DIR`` also writes what each producer sent to
``DIR/<producer>/spans.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SpanRecord
from galtea_otel.serve.server import Receiver
from galtea_otel.store.base import Store
from tests.conformance import producers
from tests.conformance.apps import producer_scenario as sc
from tests.conformance.conftest import DEFAULT_VERSION
from tests.fakes.openai_server import TOOL_ARGUMENTS, FakeOpenAI, response_model
from tests.fakes.otlp_capture import OtlpCapture

pytestmark = [pytest.mark.producers, pytest.mark.timeout(1200)]

APPS = Path(__file__).parent / "apps"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300

# producer -> (app, runtime): "self" is this interpreter, "node" the pinned node_modules, else its own venv.
PRODUCERS = {
    "openai-v2": ("openai_v2_app.py", "self"),
    "pydantic-ai": ("pydantic_ai_app.py", "venv"),
    "vercel-ai": ("vercel_ai_app.mjs", "node"),
    "langchain": ("langchain_app.py", "venv"),
    "llama-index": ("llama_index_app.py", "venv"),
    "openai-agents": ("openai_agents_app.py", "venv"),
}

# Producers whose spans never name the model that replied, only the requested one (read in their span dumps):
# openai-agents' OpenInference instrumentation records the Agent's ``model`` (its streamed generation's output is
# the SDK's own Response, naming the requested model too); LlamaIndex's records the LLM object's ``model``. Their
# turns' model is the requested one (README, "Choices the conventions force").
REQUESTED_MODEL_ONLY = frozenset({"llama-index", "openai-agents"})


def command(producer: str) -> list[str]:
    app, runtime = PRODUCERS[producer]
    if runtime == "self":
        return [sys.executable, str(APPS / app)]
    if runtime == "venv":
        return [str(producers.python_for(producer)), str(APPS / app)]
    folder = producers.node_modules()
    shutil.copy(APPS / app, folder / app)  # ESM resolves packages from the script's folder
    return ["node", str(folder / app)]


def run(producer: str, fake: FakeOpenAI, capture: OtlpCapture, session_id: str, user_id: str) -> str:
    cmd = command(producer)  # built (or found in the cache) before the app runs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "GALTEA_", "LANGFUSE_"))}
    env.update({
        sc.ENV_OPENAI_BASE_URL: fake.base_url, sc.ENV_OTLP_ENDPOINT: capture.endpoint,
        sc.ENV_SESSION_ID: session_id, sc.ENV_USER_ID: user_id, sc.ENV_TURNS: sc.turns_json(),
        "CONFORMANCE_SYSTEM": sc.SYSTEM, "CONFORMANCE_MODEL": sc.MODEL, "CONFORMANCE_TOOL_NAME": sc.TOOL_NAME,
        "PYTHONPATH": str(APPS), "NO_PROXY": "*",
    })
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{producer} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_producer_conversation(producer: str, fake_openai: FakeOpenAI, receiver: Receiver, pipeline: Pipeline,
                               store: Store, tmp_path: Path) -> None:
    assert receiver.http_address is not None
    session_id, user_id = f"{producer}-app-session", f"{producer}-user-42"
    with OtlpCapture(f"http://{receiver.http_address.host}:{receiver.http_address.port}") as capture:
        run(producer, fake_openai, capture, session_id, user_id)
        spans, statuses = capture.spans, capture.statuses
    dumps = os.environ.get("GALTEA_OTEL_SPAN_DUMPS")
    for folder in filter(None, [tmp_path, Path(dumps) / producer if dumps else None]):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spans.json").write_text(json.dumps(spans, indent=2))
    assert statuses and set(statuses) == {200}, statuses  # the receiver accepted every export
    assert len({s["trace_id"] for s in spans}) == len(sc.TURNS)  # each turn its own trace

    # The app's key, not a library's own conversation id: exactly one session.
    sessions = store.list_sessions(limit=100)
    assert [s.custom_id for s in sessions] == [session_id]
    session = read_session(store, (session_id, DEFAULT_VERSION))
    assert session is not None
    assert session.user_id == user_id
    assert session.status == "PENDING"  # no end marker: open until idle

    results = session.inference_results
    assert [r.input for r in results] == [t.user for t in sc.TURNS]  # one turn per user message
    exchanges = fake_openai.exchanges
    for result, turn in zip(results, sc.TURNS, strict=True):
        where = f"{producer} turn {result.index} ({turn.kind})"
        calls = [e for e in exchanges if e.user == turn.user]
        assert calls, where
        assert result.model in (sc.MODEL, response_model(sc.MODEL)), f"{where}: model {result.model!r}"
        if turn.kind == sc.FAIL:
            assert result.status == "FAILED", where
            assert result.error and "The fake server failed on purpose." in result.error, f"{where}: {result.error!r}"
            assert "Traceback" not in result.error, where
            continue
        assert result.status == "GENERATED", f"{where}: {result.status} {result.error}"
        assert result.error is None
        model = sc.MODEL if producer in REQUESTED_MODEL_ONLY else response_model(sc.MODEL)
        assert result.model == model, f"{where}: model {result.model!r}"
        assert result.output == calls[-1].reply, f"{where}: output {result.output!r}"
        # The conversation as the model saw it: the turn's user message, then the reply last.
        messages = result.messages
        assert [texts(m) for m in messages if m["role"] == "user"][-1] == turn.user, f"{where}: {messages}"
        assert messages[-1]["role"] == "assistant" and texts(messages[-1]) == calls[-1].reply, f"{where}: {messages}"
        # Tokens summed over the turn's distinct LLM calls, never double counted.
        with_usage = [e.usage for e in calls if e.usage is not None]
        expected = (sum(u["prompt_tokens"] for u in with_usage), sum(u["completion_tokens"] for u in with_usage))
        assert (result.input_tokens, result.output_tokens) == (expected if with_usage else (None, None)), where
        if turn.kind == sc.TOOL:
            assert len(calls) == 2 and calls[0].tool_calls, where  # LLM -> tool -> LLM, one turn
            tools = [span for span in walk(result.spans) if span.type.upper() == "TOOL"]
            assert len(tools) == 1, f"{where}: tool spans {[(t.name, t.type) for t in walk(result.spans)]}"
            assert tools[0].input is not None and json.loads(tools[0].input) == TOOL_ARGUMENTS, \
                f"{where}: tool input {tools[0].input!r}"
            assert tools[0].output == sc.weather("Paris"), f"{where}: tool output {tools[0].output!r}"
            # ... and in the messages: the call with its arguments, then its result, as a tool message.
            parts = [(m["role"], p) for m in messages for p in m["parts"]]
            call = [p for role, p in parts if role == "assistant" and p["type"] == "tool_call"]
            answer = [p for role, p in parts if role == "tool" and p["type"] == "tool_call_response"]
            assert [(p["name"], p["arguments"]) for p in call] == [(sc.TOOL_NAME, TOOL_ARGUMENTS)], f"{where}: {call}"
            assert [p["response"] for p in answer] == [sc.weather("Paris")], f"{where}: {answer}"
            assert call[0]["id"] and answer[0]["id"] == call[0]["id"], f"{where}: {call} {answer}"

    counts = pipeline.sweep(now_ns=time.time_ns() + int(31 * 60e9))
    assert counts["orphan_sessions"] == 0 and counts["orphans_dropped"] == 0, counts
    closed = store.list_sessions(limit=100)
    assert [(s.custom_id, s.status) for s in closed] == [(session_id, "COMPLETED")]


def texts(message: dict[str, Any]) -> str | None:
    found = [p["content"] for p in message["parts"] if p["type"] == "text"]
    return "\n".join(found) if found else None


def walk(spans: list[SpanRecord]) -> list[SpanRecord]:
    return [s for span in spans for s in (span, *walk(span.children))]
