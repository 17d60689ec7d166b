"""Evaluations (issue 11): scores of turns and sessions, recorded by the app, by evaluators that run when a
conversation is over, by people (``galtea-otel annotate``), or ingested from any producer's
``gen_ai.evaluation.result`` events.

This package's ``__init__`` imports nothing: ``galtea_otel.record_evaluation`` (``evaluate.record``) is on the
instrumentation path. ``Evaluator`` and the built-in evaluators are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Evaluator": "galtea_otel.evaluate.evaluators",
    "EvaluationRunner": "galtea_otel.evaluate.runner",
    "failed_turn_rate": "galtea_otel.evaluate.evaluators",
    "latency_budget": "galtea_otel.evaluate.evaluators",
    "output_contains": "galtea_otel.evaluate.evaluators",
    "output_matches": "galtea_otel.evaluate.evaluators",
    "output_is_json": "galtea_otel.evaluate.evaluators",
    "tool_call_failed": "galtea_otel.evaluate.evaluators",
    "llm_judge": "galtea_otel.evaluate.judge",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'galtea_otel.evaluate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
