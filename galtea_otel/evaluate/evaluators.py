"""Evaluators: callables run once a session is over, and the built-in deterministic ones.

An evaluator receives the session's full record (``SessionDetail``) and returns evaluations of the session and/or
of its turns: ``Evaluation`` objects, or dicts with the same fields (``name``, ``score``, ``label``,
``explanation``, ``metadata``, ``error``; ``turn`` = a turn's index or ``turn_id`` = its id; neither: the
session), one or a list, or None. It may be ``async``. Wrap it in :class:`Evaluator` to give it a name, a
version, a sampling rate or a timeout; a plain callable gets its function name, rate 1 and 30 s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from galtea_otel.records import Evaluation, EvaluatorRef, InferenceResult, SessionDetail, SpanRecord

Key = tuple[str, str, str]  # (custom_id, version, project)
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Evaluator:
    """An evaluator and how it runs: ``sample_rate`` (0..1) picks sessions by a hash of the evaluator's name
    and the session key, so every process picks the same sessions; ``timeout_s`` bounds one run."""

    fn: Callable[[SessionDetail], Any]
    name: str = ""
    version: str | None = None
    sample_rate: float = 1.0
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"an evaluator must be callable, not {type(self.fn).__name__}")
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__name__", None) or type(self.fn).__name__)
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"evaluator {self.name!r}: sample_rate must be within 0..1, not {self.sample_rate!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"evaluator {self.name!r}: timeout_s must be positive")

    @classmethod
    def of(cls, value: Any) -> Evaluator:
        if isinstance(value, Evaluator):
            return value
        if callable(value):
            return cls(value)
        raise TypeError(f"an evaluator must be a callable or an Evaluator, not {type(value).__name__}")

    def chosen(self, key: Key) -> bool:
        """Whether this evaluator runs on that session (stable across processes and runs)."""
        if self.sample_rate >= 1.0:
            return True
        digest = hashlib.sha256(f"{self.name}\0{key[0]}\0{key[1]}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.sample_rate

    @property
    def ref(self) -> EvaluatorRef:
        return EvaluatorRef(name=self.name, version=self.version)


def result_id(key: Key, evaluator: str, end_ns: int, n: int) -> str:
    # The default project's ids are those of schema v6 and earlier (a repeated run still replaces its results).
    scope = "" if key[2] == "default" else f"{key[2]}\0"
    return hashlib.sha256(
        f"run\0{scope}{key[0]}\0{key[1]}\0{evaluator}\0{end_ns}\0{n}".encode()).hexdigest()[:32]


_FIELDS = {"name", "score", "label", "explanation", "metadata", "error", "turn", "turn_id"}


def coerce(value: Any, evaluator: Evaluator, detail: SessionDetail, end_ns: int, now: datetime) -> list[Evaluation]:
    """What an evaluator returned, as evaluations (source ``evaluator``); raises TypeError / ValueError."""
    if value is None:
        return []
    items = [value] if isinstance(value, (Evaluation, Mapping)) else list(value)
    key = (detail.custom_id, detail.version, detail.project)
    out = []
    for n, item in enumerate(items):
        if isinstance(item, Evaluation):
            fields: dict[str, Any] = item.model_dump(include={"name", "score", "label", "explanation", "metadata",
                                                              "error", "turn_id"})
        elif isinstance(item, Mapping):
            unknown = set(item) - _FIELDS
            if unknown:
                raise ValueError(f"unknown evaluation field(s) {', '.join(sorted(unknown))}")
            fields = dict(item)
        else:
            raise TypeError(f"an evaluator returns Evaluation objects or dicts, not {type(item).__name__}")
        turn = _turn(detail, fields.pop("turn", None), fields.pop("turn_id", None))
        score = fields.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise TypeError(f"score must be a number, not {score!r}")
        if score is None and fields.get("label") is None and fields.get("error") is None:
            raise ValueError("an evaluation needs a score and/or a label")
        target: dict[str, Any] = {"target": "session"} if turn is None else {
            "target": "turn", "turn_id": turn.id, "span_id": turn.id, "trace_id": turn.trace_id}
        out.append(Evaluation(
            id=result_id(key, evaluator.name, end_ns, n), name=str(fields.get("name") or evaluator.name),
            score=float(score) if score is not None else None,
            label=None if fields.get("label") is None else str(fields["label"]),
            explanation=None if fields.get("explanation") is None else str(fields["explanation"]),
            error=None if fields.get("error") is None else str(fields["error"]),
            metadata=dict(fields.get("metadata") or {}), evaluator=evaluator.ref, source="evaluator",
            created_at=now, **target))
    return out


def _turn(detail: SessionDetail, index: Any, turn_id: Any) -> InferenceResult | None:
    if turn_id is not None:
        found = next((t for t in detail.inference_results if t.id == turn_id), None)
        if found is None:
            raise ValueError(f"no turn with id {turn_id!r} in this session")
        return found
    if index is None:
        return None
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(detail.inference_results):
        raise ValueError(f"no turn {index!r} in this session ({len(detail.inference_results)} turns)")
    return detail.inference_results[index]


def failure(evaluator: Evaluator, detail: SessionDetail, end_ns: int, error: str, now: datetime) -> Evaluation:
    """The evaluation left by an evaluator that raised or timed out."""
    return Evaluation(id=result_id((detail.custom_id, detail.version, detail.project), evaluator.name, end_ns, 0),
                      name=evaluator.name, error=error, evaluator=evaluator.ref, source="evaluator", created_at=now)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- built-in evaluators (offline, deterministic) --------------------------------------------------------------

def failed_turn_rate(name: str = "failed_turn_rate") -> Evaluator:
    """The session's share of FAILED turns (0..1; no turns: 0)."""
    def run(detail: SessionDetail) -> dict[str, Any]:
        turns = detail.inference_results
        failed = sum(t.status == "FAILED" for t in turns)
        return {"score": failed / len(turns) if turns else 0.0,
                "explanation": f"{failed} of {len(turns)} turn(s) failed"}
    return Evaluator(run, name=name, version="1")


def latency_budget(budget_ms: float, name: str = "latency_budget") -> Evaluator:
    """Each turn: score 1 and label ``pass`` within ``budget_ms``, else 0 and ``fail``."""
    def run(detail: SessionDetail) -> list[dict[str, Any]]:
        return [{"turn": t.index, "score": 1.0 if t.latency_ms <= budget_ms else 0.0,
                 "label": "pass" if t.latency_ms <= budget_ms else "fail",
                 "explanation": f"{t.latency_ms:.1f} ms (budget {budget_ms:g} ms)"} for t in detail.inference_results]
    return Evaluator(run, name=name, version="1")


def _per_turn(check: Callable[[str], bool], name: str, what: str) -> Evaluator:
    def run(detail: SessionDetail) -> list[dict[str, Any]]:
        return [{"turn": t.index, "score": 1.0 if ok else 0.0, "label": "pass" if ok else "fail",
                 "explanation": f"output {'' if ok else 'does not '}{what}"}
                for t in detail.inference_results for ok in [t.output is not None and check(t.output)]]
    return Evaluator(run, name=name, version="1")


def output_contains(text: str, *, ignore_case: bool = True, name: str = "output_contains") -> Evaluator:
    """Each turn: whether its output contains ``text``."""
    needle = text.lower() if ignore_case else text
    return _per_turn(lambda out: needle in (out.lower() if ignore_case else out), name, f"contain {text!r}")


def output_matches(pattern: str, *, name: str = "output_matches") -> Evaluator:
    """Each turn: whether its output matches the regular expression ``pattern`` (``re.search``)."""
    compiled = re.compile(pattern)
    return _per_turn(lambda out: compiled.search(out) is not None, name, f"match {pattern!r}")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def output_is_json(name: str = "output_is_json") -> Evaluator:
    """Each turn: whether its output is valid JSON."""
    return _per_turn(_is_json, name, "parse as JSON")


def _walk(spans: Iterable[SpanRecord]) -> Iterable[SpanRecord]:
    for span in spans:
        yield span
        yield from _walk(span.children)


def tool_call_failed(name: str = "tool_call_failed") -> Evaluator:
    """The session: score 1 and label ``failed`` when a TOOL span failed, else 0 and ``ok``."""
    def run(detail: SessionDetail) -> dict[str, Any]:
        spans = [*_walk(detail.spans), *(s for t in detail.inference_results for s in _walk(t.spans))]
        failed = [s.name for s in spans if s.type == "TOOL" and s.status == "ERROR"]
        return {"score": 1.0 if failed else 0.0, "label": "failed" if failed else "ok",
                "explanation": f"failed tool call(s): {', '.join(failed)}" if failed else "no tool call failed"}
    return Evaluator(run, name=name, version="1")
