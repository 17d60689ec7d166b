"""An LLM-as-judge evaluator: a rubric prompt to any OpenAI-compatible chat-completions endpoint.

The judge sees the rubric and the conversation (each turn's input and output) and is asked for a JSON object
``{"score": <0..1>, "explanation": "..."}``; the score and explanation are parsed from its reply (the first JSON
object in it, else a ``score: X`` line). The judge's own model, tokens and cost (priced as turns are:
``galtea_otel.pricing``) are recorded in the evaluation's ``metadata``. It uses the ``openai`` client when it is
installed, else plain ``urllib``.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from typing import Any

from galtea_otel.evaluate.evaluators import Evaluator
from galtea_otel.records import SessionDetail

SYSTEM = ("You are a strict evaluator of conversations between a user and an AI assistant. Apply the rubric to the"
          " conversation and answer with one JSON object only: {\"score\": <a number from 0 to 1>,"
          " \"explanation\": \"<one or two sentences>\"}.")
_SCORE_LINE = re.compile(r"score\W{0,3}\s*([01](?:\.\d+)?)", re.IGNORECASE)


def transcript(detail: SessionDetail, max_chars: int = 20_000) -> str:
    lines = []
    for turn in detail.inference_results:
        lines.append(f"[turn {turn.index}] user: {turn.input or ''}")
        lines.append(f"[turn {turn.index}] assistant: {turn.output or ''}" + (
            f" (failed: {turn.error})" if turn.status == "FAILED" else ""))
    text = "\n".join(lines)
    return text if len(text) <= max_chars else text[:max_chars] + "\n[... cut]"


def parse_verdict(reply: str) -> tuple[float, str | None]:
    """(score, explanation) from the judge's reply; ValueError when it holds no score."""
    start = reply.find("{")
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(reply[start:])
        except ValueError:
            start = reply.find("{", start + 1)
            continue
        if isinstance(value, dict) and isinstance(value.get("score"), (int, float)) \
                and not isinstance(value.get("score"), bool):
            explanation = value.get("explanation")
            return float(value["score"]), str(explanation) if explanation is not None else None
        start = reply.find("{", start + 1)
    match = _SCORE_LINE.search(reply)
    if match:
        return float(match.group(1)), reply.strip()[:1000]
    raise ValueError(f"the judge's reply holds no score: {reply[:200]!r}")


def _complete(base_url: str, api_key: str, model: str, messages: list[dict[str, str]],
              timeout_s: float) -> tuple[str, dict[str, Any], str]:
    """(reply text, usage, model that answered)."""
    try:
        import openai
    except ImportError:
        openai = None  # type: ignore[assignment]
    if openai is not None:
        client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=1)
        response = client.chat.completions.create(model=model, messages=messages, temperature=0)  # type: ignore[arg-type]
        usage = response.usage.model_dump() if response.usage is not None else {}
        return response.choices[0].message.content or "", usage, response.model or model
    body = json.dumps({"model": model, "messages": messages, "temperature": 0}).encode()
    request = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        data = json.loads(answer.read())
    return (data["choices"][0]["message"].get("content") or "", data.get("usage") or {},
            data.get("model") or model)


def llm_judge(
    rubric: str, *, model: str, base_url: str | None = None, api_key: str | None = None,
    name: str = "llm_judge", version: str = "1", sample_rate: float = 1.0, timeout_s: float = 60.0,
) -> Evaluator:
    """Score each session with a judge model. ``base_url`` / ``api_key`` default to ``$OPENAI_BASE_URL`` (else
    the OpenAI API) / ``$OPENAI_API_KEY``."""
    if not rubric.strip():
        raise ValueError("llm_judge(): the rubric must not be empty")

    def judge(detail: SessionDetail) -> dict[str, Any]:
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Rubric:\n{rubric}\n\nConversation:\n{transcript(detail)}"}]
        reply, usage, answered = _complete(url, key, model, messages, timeout_s)
        inp, out = usage.get("prompt_tokens"), usage.get("completion_tokens")
        from galtea_otel.pricing import price_turn

        priced = price_turn(answered, inp, out, None, time.time_ns())
        metadata = {"model": answered, "input_tokens": inp, "output_tokens": out,
                    "cost": priced.cost if priced else None, "cost_source": priced.source if priced else None}
        score, explanation = parse_verdict(reply)
        return {"score": score, "explanation": explanation, "metadata": metadata}

    return Evaluator(judge, name=name, version=version, sample_rate=sample_rate, timeout_s=timeout_s)
