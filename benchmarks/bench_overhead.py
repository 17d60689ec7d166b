"""Per-call cost of ``@galtea_otel.inference`` (input and output captured, inside a session) against a bare
``tracer.start_as_current_span`` that sets the same four attributes, and against an undecorated call.

Same process, same TracerProvider and export queue (galtea-otel's, with a no-op exporter), interleaved
rounds so both see the same machine load:

    python benchmarks/bench_overhead.py [--calls 20000] [--rounds 7]

Bar (issue 2): decorated / bare span <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import galtea_otel


class NoopExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def fake_llm(prompt: str) -> str:
    return "echo: " + prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    provider = TracerProvider()
    exporter = NoopExporter()
    galtea_otel.configure(tracer_provider=provider, exporter=exporter)
    tracer = provider.get_tracer("bench")

    def bare(prompt: str) -> str:
        with tracer.start_as_current_span("chat") as span:
            span.set_attribute("galtea.span.type", "GENERATION")
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("galtea.span.input", json.dumps(prompt))
            out = fake_llm(prompt)
            span.set_attribute("galtea.span.output", json.dumps(out))
            return out

    @galtea_otel.inference
    def decorated(prompt: str) -> str:
        return fake_llm(prompt)

    def per_call(fn: Callable[[str], str], calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn("hello, what is the weather like today?")
        return (time.perf_counter() - start) / calls * 1e6

    results: dict[str, list[float]] = {"undecorated": [], "bare span": [], "@inference": []}
    with galtea_otel.session(custom_id="bench", version="1"):
        for fn in (fake_llm, bare, decorated):  # warm up
            per_call(fn, 1000)
        for _ in range(args.rounds):
            results["undecorated"].append(per_call(fake_llm, args.calls))
            results["bare span"].append(per_call(bare, args.calls))
            results["@inference"].append(per_call(decorated, args.calls))
    galtea_otel.shutdown()
    ratios = [d / b for d, b in zip(results["@inference"], results["bare span"], strict=True)]
    print(f"{args.calls} calls x {args.rounds} interleaved rounds, inside one session,"
          " galtea-otel's export queue + no-op exporter")
    for name, values in results.items():
        print(f"{name:12s} {statistics.median(values):8.2f} us/call (median)")
    print(f"ratio @inference / bare span: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); bar <= 1.3x")


if __name__ == "__main__":
    main()
