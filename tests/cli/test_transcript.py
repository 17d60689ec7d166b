"""The transcript `sessions show` prints, from the normalized messages of each turn (README, "The content model")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from galtea_otel.cli.render import Renderer
from galtea_otel.records import InferenceResult, SessionDetail

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SYSTEM = "You are a weather assistant. " * 10


def _turn(index: int, messages: list[dict[str, object]], **fields: object) -> InferenceResult:
    base: dict[str, object] = {
        "id": f"{index:016x}", "trace_id": "a" * 32, "index": index, "status": "GENERATED",
        "started_at": T0 + timedelta(seconds=index), "ended_at": T0 + timedelta(seconds=index, milliseconds=250),
        "latency_ms": 250.0, "messages": messages,
    }
    base.update(fields)
    return InferenceResult.model_validate(base)


def test_transcript_from_messages() -> None:
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "get_weather",
                                         "arguments": {"city": "Paris"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "18C"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "It is 18C."}], "finish_reason": "stop"},
    ]
    failed = _turn(1, [*messages[:2], {"role": "user", "parts": [{"type": "text", "content": "And Rome?"}]}],
                   input="And Rome?", status="FAILED", error="RateLimitError: slow down")
    detail = SessionDetail.model_validate({
        "custom_id": "conv-1", "version": "1.0", "status": "COMPLETED", "user_id": "u-7",
        "started_at": T0, "ended_at": T0 + timedelta(seconds=3), "turn_count": 2, "latency_ms": 500.0,
        "inference_results": [
            _turn(0, messages, input="Weather in Paris?", output="It is 18C.", model="gpt-4o-mini",
                  input_tokens=30, output_tokens=5, total_tokens=35, finish_reason="stop"),
            failed,
        ],
    })
    lines = Renderer(color=False).session_detail(detail)
    out = "\n".join(lines)
    assert re.search(r"^  user +u-7$", out, re.M)
    assert re.search(r"^  elapsed +3\.00 s wall clock, 500\.0 ms in turns$", out, re.M)
    assert out.count("system ") == 1  # shown once, for both turns
    [system_line] = [line for line in lines if line.lstrip().startswith("system")]
    assert system_line.endswith("…") and len(system_line) < 130
    assert '      tool       get_weather({"city":"Paris"}) -> 18C' in out
    assert "      assistant  It is 18C." in out
    assert "-- GENERATED  latency 250.0 ms  tokens 30/5/35  cost -  model gpt-4o-mini  finish stop" in out
    assert "      user       And Rome?" in out and "      assistant  -" in out
    assert "-- FAILED" in out and "error  RateLimitError: slow down" in out
