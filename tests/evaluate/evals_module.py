"""Evaluators that ``galtea-otel serve --evaluators tests.evaluate.evals_module:EVALUATORS`` loads."""

from __future__ import annotations

from typing import Any

from galtea_otel.evaluate.evaluators import Evaluator, failed_turn_rate
from galtea_otel.records import SessionDetail


def turn_count(detail: SessionDetail) -> dict[str, Any]:
    return {"score": float(len(detail.inference_results))}


EVALUATORS = [Evaluator(turn_count, version="2"), failed_turn_rate()]
