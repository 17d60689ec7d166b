"""Every example runs as it is (``python examples/NAME.py``) and leaves the records it promises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from galtea_otel.pipeline import read_session
from galtea_otel.records import SessionDetail
from galtea_otel.store import Store, open_store
from tests.examples.runner import EXAMPLES, run_example, sqlite_url

TESTED = {"quickstart.py", "async_conversation.py", "streaming.py", "simulated_conversation.py",
          "failing_session.py"}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "records.db")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store the example writes to, opened by the test (a second process, as a reader would be)."""
    opened = open_store(store_url)
    yield opened
    opened.close()


def detail(store: Store, custom_id: str, version: str | None = None) -> SessionDetail:
    key = store.find_session_key(custom_id, version)
    assert key is not None, f"no session {custom_id!r}; have {[s.custom_id for s in store.list_sessions()]}"
    found = read_session(store, key)
    assert found is not None
    return found


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


def test_quickstart(store_url: str, store: Store, tmp_path: Path) -> None:
    assert len((EXAMPLES / "quickstart.py").read_text().splitlines()) <= 25
    proc = run_example("quickstart.py", store_url, tmp_path)
    assert "quickstart-1" in proc.stdout
    s = detail(store, "quickstart-1", "1.0.0")
    assert s.status == "COMPLETED"
    assert s.is_production and s.error is None
    assert s.turn_count == 2
    assert [t.index for t in s.inference_results] == [0, 1]
    assert [t.input for t in s.inference_results] == ["hello", "what can you do?"]
    assert [t.output for t in s.inference_results] == ["You said: hello", "You said: what can you do?"]
    assert {t.model for t in s.inference_results} == {"echo-1"}
    assert all(t.status == "GENERATED" and t.latency_ms >= 0 for t in s.inference_results)
    assert not (tmp_path / "galtea_sessions.db").exists()  # it honoured GALTEA_OTEL_STORE


def test_async_conversation_keeps_sessions_apart(store_url: str, store: Store, tmp_path: Path) -> None:
    run_example("async_conversation.py", store_url, tmp_path)
    conversations = {"alice": ["Hi", "Upgrade my plan", "Thanks"], "bob": ["Hello", "Cancel my order"]}
    for user, messages in conversations.items():
        s = detail(store, f"async-{user}", "2.0.0")
        assert s.status == "COMPLETED"
        assert s.metadata == {"user": user}
        assert s.turn_count == len(messages)
        inputs = [json.loads(t.input or "null") for t in s.inference_results]
        assert inputs == [{"user_id": user, "message": m} for m in messages]  # in order, no other task's turn
        for turn, message in zip(s.inference_results, messages, strict=True):
            assert turn.output == f"[pro] Got it: {message}"
            assert turn.model == "fake-async-llm-1"
            assert turn.output_tokens == 8 and turn.input_tokens == len(message.split()) + 5
            assert turn.latency_ms >= 10  # two awaited sleeps of 10 ms
            [tool] = turn.spans
            assert (tool.type, tool.name, tool.input) == ("TOOL", "fetch_profile", user)
        assert s.total_tokens == sum(t.total_tokens or 0 for t in s.inference_results)


def test_streaming_full_and_abandoned(store_url: str, store: Store, tmp_path: Path) -> None:
    proc = run_example("streaming.py", store_url, tmp_path)
    s = detail(store, "streaming-1", "1.0.0")
    assert s.status == "COMPLETED"
    assert s.turn_count == 2
    full, abandoned = s.inference_results
    assert full.input == "streams"
    assert full.output == "Here is a long answer about streams , in several chunks . "
    assert not full.abandoned
    assert abandoned.input == "abandoned streams"
    assert abandoned.output == "Here is a "  # the three chunks read before the break
    assert abandoned.abandoned
    assert "abandoned after: Here is a" in proc.stdout


def test_simulated_conversation(store_url: str, store: Store, tmp_path: Path) -> None:
    proc = run_example("simulated_conversation.py", store_url, tmp_path)
    sessions = store.list_sessions()
    assert len(sessions) == 4
    assert sorted(s.status for s in sessions) == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    run = sessions[0].custom_id.split("-")[1]
    assert f"demo-{run}-order-status" in proc.stdout

    order = detail(store, f"demo-{run}-order-status")
    assert order.version == "demo-1.0.0" and order.is_production
    assert order.turn_count == 3
    assert [t.input for t in order.inference_results] == [
        "Hi! Where is my order?", "Sure, it's A1001.", "Great, thanks a lot!"]
    assert order.inference_results[1].output == "Order A1001: shipped with DHL, arriving Thursday."
    [tool] = order.inference_results[1].spans
    assert (tool.type, tool.name, tool.input) == ("TOOL", "lookup_order", "A1001")
    assert json.loads(tool.output or "{}")["carrier"] == "DHL"
    for turn in order.inference_results:
        assert turn.model == "fake-support-llm-1"
        assert turn.input_tokens and turn.output_tokens and turn.cost
        assert turn.latency_ms >= 10
    assert order.inference_results[1].cache_read_input_tokens  # the history is the cached prefix
    assert order.input_tokens == sum(t.input_tokens or 0 for t in order.inference_results)

    returns = detail(store, f"demo-{run}-returns")
    assert returns.turn_count == 2
    assert [t.spans[0].type for t in returns.inference_results] == ["RETRIEVER", "RETRIEVER"]
    assert "30 days" in (returns.inference_results[0].output or "")

    evaluation = detail(store, f"demo-{run}-eval-return-window")
    assert evaluation.test_case_id == "tc-return-window"
    assert not evaluation.is_production
    assert evaluation.context == "The customer received a pair of headphones 10 days ago."
    assert evaluation.inference_results[0].input == "How many days do I have to return an item?"

    outage = detail(store, f"demo-{run}-outage")
    assert outage.status == "FAILED"
    assert outage.error == "ConnectionError: LLM backend unavailable (HTTP 503 from fake-support-llm)"
    assert [(t.status, t.error is not None) for t in outage.inference_results] == [
        ("GENERATED", False), ("FAILED", True)]


def test_simulated_conversation_is_deterministic(store_url: str, store: Store, tmp_path: Path) -> None:
    run_example("simulated_conversation.py", store_url, tmp_path)
    run_example("simulated_conversation.py", store_url, tmp_path)
    sessions = store.list_sessions()
    assert len(sessions) == 8  # two runs never mix: each has its own custom ids
    runs: dict[str, list[tuple[str, list[tuple[str | None, str | None, int | None]]]]] = {}
    for s in sessions:
        run = "-".join(s.custom_id.split("-")[:2])
        d = detail(store, s.custom_id)
        turns = [(t.input, t.output, t.total_tokens) for t in d.inference_results]
        runs.setdefault(run, []).append((s.custom_id.removeprefix(run), turns))
    first, second = (sorted(v) for v in runs.values())
    assert first == second


def test_failing_session(store_url: str, store: Store, tmp_path: Path) -> None:
    proc = run_example("failing_session.py", store_url, tmp_path)  # exits 0: the script catches the error
    assert "PaymentServiceDown: cannot refund A1001" in proc.stdout
    s = detail(store, "failing-session-1", "1.0.0")
    assert s.status == "FAILED"
    assert s.error is not None
    assert "PaymentServiceDown" in s.error and "cannot refund A1001: payments API returned 503" in s.error
    assert s.turn_count == 2
    ok, failed = s.inference_results
    assert (ok.status, ok.output) == ("GENERATED", "Hello! How can I help?")
    assert failed.status == "FAILED"
    assert failed.error is not None and "payments API returned 503" in failed.error
    [tool] = s.spans  # the unhandled tool call ran outside any turn
    assert (tool.name, tool.status) == ("issue_refund", "ERROR")
