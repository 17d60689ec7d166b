"""Per-call cost of ``@galtea_otel.inference`` (input and output captured, inside a session, so the span is
stamped with the session's four attributes) against a bare span that sets four attributes on a **plain**
OpenTelemetry ``TracerProvider``: no galtea-otel processor, the SDK's own ``BatchSpanProcessor`` in front of a
no-op exporter. Both sides export through a batch processor into a no-op exporter, each side its own provider.

    python benchmarks/bench_overhead.py [--quick] [--calls 20000] [--rounds 7]

Also printed, to show where the time goes (same run, same baseline):

- ``bare span, galtea provider``: the same bare span on the provider galtea-otel is attached to, inside the
  session: what galtea-otel's processor (stamping + its export queue) adds to *any* library's span;
- ``@inference, no session``: the decorator without stamping.

Bar (issue 9): @inference / plain bare span <= 1.3x.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import galtea_otel

PROMPT = "hello, what is the weather like today?"


class NoopExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def fake_llm(prompt: str) -> str:
    return "echo: " + prompt


def bare_span_on(provider: TracerProvider) -> Callable[[str], str]:
    tracer = provider.get_tracer("bench")

    def bare(prompt: str) -> str:
        with tracer.start_as_current_span("chat") as span:
            span.set_attribute("galtea.span.type", "GENERATION")
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("galtea.span.input", json.dumps(prompt))
            out = fake_llm(prompt)
            span.set_attribute("galtea.span.output", json.dumps(out))
            return out

    return bare


def per_call(fn: Callable[[str], str], calls: int) -> float:
    """CPU time of the calling thread per call, in microseconds: on a machine shared with other work, wall
    time mostly measures the neighbours; the export threads' work (a no-op exporter) is not counted."""
    start = time.thread_time()
    for _ in range(calls):
        fn(PROMPT)
    return (time.thread_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 calls x 15 rounds")
    parser.add_argument("--calls", type=int, default=5_000, help="calls per measure and round")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 2_000, 15

    # The baseline: a plain SDK provider, the SDK's batch processor, nothing of galtea-otel's.
    plain = TracerProvider()
    plain_exporter = NoopExporter()
    plain.add_span_processor(BatchSpanProcessor(plain_exporter, max_queue_size=1 << 20))
    plain_bare = bare_span_on(plain)

    provider = TracerProvider()
    exporter = NoopExporter()
    galtea_otel.configure(tracer_provider=provider, exporter=exporter)
    galtea_bare = bare_span_on(provider)

    @galtea_otel.inference
    def decorated(prompt: str) -> str:
        return fake_llm(prompt)

    session = galtea_otel.session(custom_id="bench", version="1")
    in_session = contextvars.copy_context()
    in_session.run(session.__enter__)  # every measure but the last runs in this context: inside the session
    outside = contextvars.Context()  # an empty context: no session, no stamping
    measures: dict[str, tuple[Callable[[str], str], contextvars.Context]] = {
        "undecorated call": (fake_llm, in_session),
        "bare span, plain provider": (plain_bare, in_session),
        "@inference, in a session": (decorated, in_session),
        "bare span, galtea provider": (galtea_bare, in_session),
        "@inference, no session": (decorated, outside),
    }
    results: dict[str, list[float]] = {name: [] for name in measures}
    for fn, ctx in measures.values():  # warm up
        ctx.run(per_call, fn, 1000)
    items = list(measures.items())
    for r in range(args.rounds):  # interleaved rounds, order reversed every other: the same machine load
        for name, (fn, ctx) in (items if r % 2 else items[::-1]):
            results[name].append(ctx.run(per_call, fn, args.calls))
        plain.force_flush()
        galtea_otel.flush()
    in_session.run(session.__exit__, None, None, None)
    galtea_otel.shutdown()
    plain.shutdown()

    base = results["bare span, plain provider"]
    print(f"{args.calls:,} calls x {args.rounds} interleaved rounds; Python {platform.python_version()}, "
          f"opentelemetry-sdk {version('opentelemetry-sdk')}, {platform.machine()}")
    print(f"{'what':30s} {'us/call':>8s}  ratio to the plain bare span: median (min-max)")
    for name, values in results.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(f"{name:30s} {statistics.median(values):8.2f}  {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})")
    ratios = [d / b for d, b in zip(results["@inference, in a session"], base, strict=True)]
    verdict = "met" if statistics.median(ratios) <= 1.3 else "NOT met"
    print(f"bar: @inference in a session <= 1.3x the plain bare span: {statistics.median(ratios):.2f}x, {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
