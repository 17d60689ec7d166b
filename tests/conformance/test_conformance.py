"""SESSION_MODEL section 5 proven on spans produced by the real packages (issue 3, point 6).

Each app under ``apps/`` drives the real ``openai`` client against the fake OpenAI server, instrumented by one
package that marks the conversation its own way, and exports OTLP to a real receiver. Every span is the
package's own; the test only reads the records the receiver stored.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import InferenceResult, SessionDetail
from galtea_otel.serve.server import Receiver
from galtea_otel.store.base import Store
from tests.conformance.apps import scenario
from tests.conformance.conftest import DEFAULT_VERSION
from tests.fakes.openai_server import FakeOpenAI, reply_for, response_model, usage_for

APPS = Path(__file__).parent / "apps"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def run_app(name: str, fake: FakeOpenAI, receiver: Receiver, main_id: str, other_id: str) -> str:
    assert receiver.http_address is not None
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "LANGFUSE_", "TRACELOOP_", "GALTEA_", "OPENAI_"))}
    env.update({
        scenario.ENV_OPENAI_BASE_URL: fake.base_url,
        scenario.ENV_OTLP_ENDPOINT: f"http://{receiver.http_address.host}:{receiver.http_address.port}",
        scenario.ENV_MAIN_ID: main_id,
        scenario.ENV_OTHER_ID: other_id,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS), env.get("PYTHONPATH")])),
        "NO_PROXY": "*",
    })
    proc = subprocess.run([sys.executable, str(APPS / name)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


# --- reading what a turn holds -------------------------------------------------------------------------------------

def _texts(content: Any) -> list[str]:
    """The text of a message's content: a string, or OpenAI content parts / GenAI parts."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [t for part in content if isinstance(part, dict)
                for t in _texts(part.get("content", part.get("text")))]
    return []


def messages_of(value: str | None) -> list[tuple[str | None, str]]:
    """A turn's input or output as (role, text) pairs: plain text is one message with no role; a JSON message
    (or list of messages) in the OpenAI, GenAI, OpenInference or Langfuse shape gives one pair per message.
    Anything else (an API envelope, function arguments...) is kept whole as its JSON text, role None."""
    if value is None:
        return []
    try:
        decoded = json.loads(value)
    except ValueError:
        return [(None, value)]
    if isinstance(decoded, str):
        return [(None, decoded)]
    items = decoded if isinstance(decoded, list) else [decoded]
    if all(isinstance(m, dict) and "role" in m for m in items):
        return [(m["role"], "".join(_texts(m.get("content", m.get("parts"))))) for m in items]
    return [(None, value)]


def output_text(turn: InferenceResult) -> str:
    """The assistant's reply in a turn's output: exactly one message, the reply and nothing around it."""
    messages = messages_of(turn.output)
    assert len(messages) == 1, f"turn {turn.index}: output is not one message: {turn.output!r}"
    role, text = messages[0]
    assert role in (None, "assistant"), f"turn {turn.index}: output role {role!r}"
    return text


# --- the test -----------------------------------------------------------------------------------------------------

def _case(app: str, case_id: str, *modules: str) -> Any:
    """One app; skipped (not failed) only when the ``conformance`` extra is not installed."""
    absent = [m for m in ("openai", "opentelemetry.exporter.otlp.proto.http", *modules) if not _importable(m)]
    marks = [pytest.mark.skip(reason=f"{', '.join(absent)} not installed: pip install -e '.[conformance]'")] \
        if absent else []
    return pytest.param(app, id=case_id, marks=marks)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


CASES = [
    _case("genai_app.py", "genai-openai-v2", "opentelemetry.instrumentation.openai_v2"),
    _case("openinference_app.py", "openinference", "openinference.instrumentation.openai"),
    _case("openllmetry_app.py", "openllmetry", "opentelemetry.instrumentation.openai"),
    _case("langfuse_app.py", "langfuse", "langfuse"),
    _case("galtea_app.py", "galtea-sdk", "galtea", "opentelemetry.instrumentation.openai_v2"),
]


@pytest.mark.parametrize("app", CASES)
def test_conversation_becomes_sessions(
    app: str, fake_openai: FakeOpenAI, receiver: Receiver, pipeline: Pipeline, store: Store
) -> None:
    stem = app.removesuffix("_app.py")
    main_id, other_id = f"{stem}-conversation-main", f"{stem}-conversation-other"
    run_app(app, fake_openai, receiver, main_id, other_id)

    # The app really talked to the fake: every turn, in order, with its history.
    played = len(scenario.MAIN) + len(scenario.OTHER)
    assert len(fake_openai.requests) == played

    # Nothing is held: every span found its session through the package's own marking.
    sessions = {s.custom_id: s for s in store.list_sessions(limit=100)}
    assert set(sessions) == {main_id, other_id}, sessions
    for session in sessions.values():
        assert session.version == DEFAULT_VERSION
        assert session.status == "PENDING"  # no session span: open until ended or idle
        assert session.is_production

    main = read_session(store, (main_id, DEFAULT_VERSION))
    other = read_session(store, (other_id, DEFAULT_VERSION))
    assert main is not None and other is not None
    check_conversation(main, scenario.MAIN)
    check_conversation(other, scenario.OTHER)

    # Aggregates are recomputed from the turns.
    assert main.turn_count == len(scenario.MAIN)
    assert main.input_tokens == sum(t.input_tokens or 0 for t in main.inference_results)
    assert main.output_tokens == sum(t.output_tokens or 0 for t in main.inference_results)

    # Idle for longer than the limit: closed as COMPLETED (the failed turn was caught, so the session did not
    # fail), and no span was left held to become a session of its own.
    counts = pipeline.sweep(now_ns=time.time_ns() + int(31 * 60e9))
    assert counts["orphan_sessions"] == 0 and counts["orphans_dropped"] == 0, counts
    closed = {s.custom_id: s for s in store.list_sessions(limit=100)}
    assert set(closed) == {main_id, other_id}
    assert {s.status for s in closed.values()} == {"COMPLETED"}


def check_conversation(session: SessionDetail, turns: tuple[scenario.Turn, ...]) -> None:
    results = session.inference_results
    assert [t.index for t in results] == list(range(len(turns)))
    assert len(results) == len(turns), [(t.index, t.input) for t in results]
    history: list[dict[str, str]] = []
    for turn, result in zip(turns, results, strict=True):
        where = f"{session.custom_id} turn {result.index} ({turn.kind})"
        history.append({"role": "user", "content": turn.user})
        # The input holds the user message (with the history before it, where the package records it).
        assert result.input is not None and turn.user in result.input, f"{where}: input {result.input!r}"
        assert result.model in (scenario.MODEL, response_model(scenario.MODEL)), f"{where}: model {result.model!r}"
        if turn.kind == scenario.FAIL:
            assert result.status == "FAILED", f"{where}: {result.status}"
            assert result.error and "failed on purpose" in result.error, f"{where}: error {result.error!r}"
            history.pop()
            continue
        assert result.status == "GENERATED", f"{where}: {result.status} {result.error}"
        assert result.error is None
        reply = reply_for(turn.user)
        # A streamed reply is complete: every chunk joined.
        assert output_text(result) == reply, f"{where}: output {result.output!r}"
        assert result.model == response_model(scenario.MODEL), f"{where}: model {result.model!r}"
        usage = usage_for(history, reply)
        assert (result.input_tokens, result.output_tokens, result.total_tokens) == (
            usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]), where
        history.append({"role": "assistant", "content": reply})
