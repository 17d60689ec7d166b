"""What travels in the OpenTelemetry Context, and how to carry it into threads.

A session puts its *stamp* (the attributes every span of the session carries) in the Context; the stamping
span processor copies it onto each span that starts there. An inference puts its span there so that
``record_usage()`` finds it from any span nested inside.

Context follows nested calls and asyncio tasks by itself (``asyncio.create_task`` / ``gather`` copy it), and
so does ``asyncio.to_thread``. A plain ``threading.Thread``, ``ThreadPoolExecutor.submit`` or
``loop.run_in_executor`` start from an *empty* context: their spans would fall out of the session (orphan
traces). Use :class:`ContextThreadPoolExecutor`, or wrap the callable with :func:`in_context`.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

from galtea_otel.attributes import GEN_AI_CONVERSATION_ID, SESSION_CUSTOM_ID, SESSION_ID, SESSION_VERSION

__all__ = ["INFERENCE_KEY", "SESSION_KEY", "ContextThreadPoolExecutor", "in_context", "make_stamp"]

SESSION_KEY = otel_context.create_key("galtea_otel.session")
"""Context key; value: the stamp dict of the current session (see :func:`make_stamp`)."""
INFERENCE_KEY = otel_context.create_key("galtea_otel.inference")
"""Context key; value: the span of the innermost current inference."""

P = ParamSpec("P")
R = TypeVar("R")


def make_stamp(custom_id: str, version: str) -> dict[str, str]:
    """The attributes stamped on every span of the session (custom_id, version), in stamping order."""
    return {
        SESSION_CUSTOM_ID: custom_id,
        SESSION_VERSION: version,
        GEN_AI_CONVERSATION_ID: custom_id,
        SESSION_ID: custom_id,
    }


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that it runs in (a copy of) the context current *now*, wherever it is called later.

    Example::

        with galtea_otel.session(custom_id="conv-42", version="1.4.0"):
            threading.Thread(target=galtea_otel.in_context(search_docs), args=("query",)).start()

    Each call runs in its own copy, so the wrapper may be called from several threads at once.
    (``asyncio.to_thread`` already does this; it needs no wrapper.)
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in the context of the code that submitted them.

    Spans started by a task are children of the span current at ``submit()`` (or ``map()``) time and carry its
    session's attributes. Example::

        with galtea_otel.session(custom_id="conv-42", version="1.4.0"):
            with galtea_otel.ContextThreadPoolExecutor(max_workers=4) as pool:
                docs = list(pool.map(search_docs, queries))
    """

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
