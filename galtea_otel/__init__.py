"""galtea-otel: turn conversations with LLM applications into session records, on OpenTelemetry.

Quickstart::

    import galtea_otel

    galtea_otel.configure()                      # SQLite file ./galtea_sessions.db unless $GALTEA_OTEL_STORE

    @galtea_otel.inference(model="gpt-4o-mini")
    def chat(prompt: str) -> str: ...

    with galtea_otel.session(custom_id="conv-42", version="1.4.0"):
        chat("hello")

Importing this package loads only the OpenTelemetry API/SDK trace modules and wrapt; the records, the pipeline
settings and the exporter are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from galtea_otel import stats as _stats_module
from galtea_otel.config import VERSION, configure, flush, shutdown
from galtea_otel.evaluate.record import record_evaluation
from galtea_otel.instrument.context import ContextThreadPoolExecutor, in_context
from galtea_otel.instrument.operation import Invocation, Operation, inference, record_usage, span
from galtea_otel.instrument.session import ActiveSession, continue_session, end_session, session
from galtea_otel.instrument.testcases import get_test_case, register_test_cases

if TYPE_CHECKING:
    from galtea_otel import redact
    from galtea_otel.records import Evaluation, InferenceResult, Session, SessionDetail, SpanRecord, TestCase
    from galtea_otel.settings import PipelineSettings

__version__ = VERSION

# ``galtea_otel.stats()`` returns the counters; ``galtea_otel.stats.incr(...)`` and
# ``from galtea_otel.stats import incr`` work too. Bound after the submodule import (which set this attribute
# to the module); later imports of the submodule find it in sys.modules and leave the attribute alone.
stats = _stats_module.counters

__all__ = [
    "ActiveSession",
    "ContextThreadPoolExecutor",
    "Evaluation",
    "InferenceResult",
    "Invocation",
    "Operation",
    "PipelineSettings",
    "Session",
    "SessionDetail",
    "SpanRecord",
    "TestCase",
    "__version__",
    "configure",
    "continue_session",
    "end_session",
    "flush",
    "get_test_case",
    "in_context",
    "inference",
    "record_evaluation",
    "record_usage",
    "redact",
    "register_test_cases",
    "session",
    "shutdown",
    "span",
    "stats",
]

_LAZY = {
    "Session": "galtea_otel.records",
    "SessionDetail": "galtea_otel.records",
    "InferenceResult": "galtea_otel.records",
    "Evaluation": "galtea_otel.records",
    "SpanRecord": "galtea_otel.records",
    "TestCase": "galtea_otel.records",
    "PipelineSettings": "galtea_otel.settings",
}


def __getattr__(name: str) -> Any:
    if name == "redact":  # the submodule galtea_otel.redact (secrets(), chain()), imported on first use
        import importlib

        return importlib.import_module("galtea_otel.redact")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'galtea_otel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
