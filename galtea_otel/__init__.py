"""galtea-otel: turn conversations with LLM applications into session records, on OpenTelemetry.

Quickstart::

    import galtea_otel

    galtea_otel.configure()                      # SQLite file ./galtea_sessions.db unless $GALTEA_OTEL_STORE

    @galtea_otel.inference(model="gpt-4o-mini")
    def chat(prompt: str) -> str: ...

    with galtea_otel.session(custom_id="conv-42", version="1.4.0"):
        chat("hello")

Importing this package loads nothing but its counters (``galtea_otel.stats``): the instrumentation API
(``configure``, ``session``, ``inference``, ...; the OpenTelemetry API/SDK trace modules and wrapt) is imported
on the first use of any of its names, all at once, and the records (pydantic) and pipeline settings on the first
use of theirs. So the read paths (``galtea-otel ui``, ``sessions list``: ``galtea_otel.store``, ``galtea_otel.ui``)
import neither the OpenTelemetry SDK nor, until a record is made, pydantic.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from galtea_otel import stats as _stats_module

if TYPE_CHECKING:
    from galtea_otel import redact
    from galtea_otel.config import VERSION, configure, flush, shutdown
    from galtea_otel.evaluate.record import record_evaluation
    from galtea_otel.instrument.context import ContextThreadPoolExecutor, in_context
    from galtea_otel.instrument.operation import Invocation, Operation, inference, record_usage, span
    from galtea_otel.instrument.session import ActiveSession, continue_session, end_session, session
    from galtea_otel.instrument.testcases import get_test_case, register_test_cases
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

# The instrumentation API: imported together on the first use of any of these names (what ``import galtea_otel``
# used to load eagerly).
_API = {
    "VERSION": "galtea_otel.config",
    "__version__": "galtea_otel.config",
    "configure": "galtea_otel.config",
    "flush": "galtea_otel.config",
    "shutdown": "galtea_otel.config",
    "record_evaluation": "galtea_otel.evaluate.record",
    "ContextThreadPoolExecutor": "galtea_otel.instrument.context",
    "in_context": "galtea_otel.instrument.context",
    "Invocation": "galtea_otel.instrument.operation",
    "Operation": "galtea_otel.instrument.operation",
    "inference": "galtea_otel.instrument.operation",
    "record_usage": "galtea_otel.instrument.operation",
    "span": "galtea_otel.instrument.operation",
    "ActiveSession": "galtea_otel.instrument.session",
    "continue_session": "galtea_otel.instrument.session",
    "end_session": "galtea_otel.instrument.session",
    "session": "galtea_otel.instrument.session",
    "get_test_case": "galtea_otel.instrument.testcases",
    "register_test_cases": "galtea_otel.instrument.testcases",
}
# Submodules that an eager import used to bind on the package (``galtea_otel.config``) or that are imported
# on first use (``galtea_otel.redact``): an attribute access imports just that one.
_API_SUBMODULES = ("attributes", "config", "evaluate", "instrument", "redact", "translate")

_LAZY = {
    "Session": "galtea_otel.records",
    "SessionDetail": "galtea_otel.records",
    "InferenceResult": "galtea_otel.records",
    "Evaluation": "galtea_otel.records",
    "SpanRecord": "galtea_otel.records",
    "TestCase": "galtea_otel.records",
    "PipelineSettings": "galtea_otel.settings",
}


def _load_api() -> None:
    import importlib

    for module in dict.fromkeys(_API.values()):
        importlib.import_module(module)
    for name, module in _API.items():
        globals()[name] = getattr(sys.modules[module], "VERSION" if name == "__version__" else name)


def __getattr__(name: str) -> Any:
    if name in _API:
        _load_api()
        return globals()[name]
    if name in _API_SUBMODULES:  # ``from galtea_otel import attributes`` asks here before importing it
        import importlib

        return importlib.import_module(f"galtea_otel.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'galtea_otel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
