"""Issue 12 point 5 (recursion): ``@inference`` / ``@span`` add one Python frame per call (a wrapt proxy added
three: its C call, counted against the recursion limit, and its wrapper's frame), so a recursive decorated
function keeps most of its depth. One frame per call is the floor for any Python decorator: a function of k
frames per level keeps k / (k + 1) of its depth. Measured at the same recursion limit, in the same test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel

LIMIT = 500


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    galtea_otel.configure(tracer_provider=TracerProvider(shutdown_on_exit=False), exporter=InMemorySpanExporter(),
                          max_queue_size=100_000)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)
        galtea_otel.shutdown()


def reachable_depth(decorate: Callable[[Any], Any], helpers: int = 0) -> int:
    """How deep a recursive function gets before RecursionError; ``helpers`` plain frames per level besides it."""
    deepest = [0]

    def level(n: int) -> int:
        deepest[0] = n
        return descend(n + 1, helpers)

    def descend(n: int, left: int) -> int:
        return descend(n, left - 1) if left else recurse(n)

    recurse = decorate(level)
    with pytest.raises(RecursionError):
        recurse(0)
    return deepest[0]


def test_the_decorator_adds_one_frame_per_call() -> None:
    frames: list[int] = []

    @galtea_otel.inference(name="rec")
    def rec(n: int) -> int:
        if n == 3:
            here = sys._getframe()
            count, frame = 0, here.f_back
            while frame is not None and frame.f_code is not here.f_code:
                count += 1
                frame = frame.f_back
            frames.append(count)
            return n
        return rec(n + 1)

    assert rec(0) == 3
    assert frames == [1]  # between two levels of rec: the wrapper's frame, nothing else


@pytest.mark.parametrize(("helpers", "kept"), [(0, 0.45), (3, 0.75)])
@pytest.mark.parametrize("decorator", ["inference", "span"])
def test_a_recursive_decorated_function_keeps_its_depth(helpers: int, kept: float, decorator: str) -> None:
    """A one-frame recursive function keeps half its depth (the floor: one frame added to one), a function of 4
    frames per level keeps 4/5 (bars 0.45 and 0.75: a few frames of headroom for the span's own work)."""
    plain = reachable_depth(lambda f: f, helpers)
    make = galtea_otel.inference(name="rec") if decorator == "inference" else galtea_otel.span("rec")
    decorated = reachable_depth(make, helpers)
    assert decorated >= kept * plain, (decorated, plain)


def test_at_the_bottom_of_the_stack_the_application_gets_its_own_recursion_error() -> None:
    """Where no stack is left for the span, the function runs untraced (counted), and the RecursionError the
    application sees comes from its own code, as without the decorator."""
    galtea_otel.stats.reset()

    @galtea_otel.inference(name="rec")
    def rec(n: int) -> int:
        return rec(n + 1)

    with pytest.raises(RecursionError) as caught:
        rec(0)
    assert caught.traceback[-1].name in ("rec", "sync_wrapper")
