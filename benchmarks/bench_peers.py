"""Other libraries' decorators against the same plain bare span, in one run: the peer figures BENCHMARKS.md
quotes, reproducible.

    python benchmarks/bench_peers.py [--quick] [--calls 5000] [--rounds 21]

The peers are installed, pinned (``PINS``), into a virtual environment of their own, cached under
``~/.cache/galtea-otel/bench-peers-<hash of the pins>`` (made on the first run, a few minutes; reused after);
the script then re-runs itself with that environment's Python, with this checkout on ``sys.path`` for
galtea-otel's own figure.

Each decorator wraps the same function (``"echo: " + prompt``), with its defaults (input and output captured),
exporting into a no-op exporter through a batch processor:

- baseline: ``tracer.start_as_current_span`` setting four attributes (type, operation, input, output as JSON)
  on a **plain** SDK ``TracerProvider`` + ``BatchSpanProcessor``;
- ``galtea_otel.inference`` inside a ``galtea_otel.session`` (stamping on), its own processor;
- the official galtea SDK's ``@traced(type="GENERATION")`` (it uses the global provider: a plain one);
- Traceloop's ``@task`` (``Traceloop.init(exporter=...)``: its own provider and processors; it is kept off the
  global provider, which it would otherwise add its processors to);
- OpenInference's ``@tracer.llm`` (``OITracer`` over a plain provider);
- Langfuse's ``@observe(as_type="generation")`` (``Langfuse(span_exporter=...)``: its own processor).

Per call CPU time of the calling thread (``time.thread_time``), interleaved rounds, median of the per-round
ratios (min-max). traceloop-sdk 0.62.4's full dependency set does not resolve from the registry this project
uses (pinned instrumentations are missing there), so it is installed without dependencies, with those its
decorators import (``NO_DEPS``).
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINS = [
    "opentelemetry-api==1.45.2", "opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp-proto-http==1.45.2",
    "opentelemetry-exporter-otlp-proto-grpc==1.45.2", "galtea==5.12.0", "openinference-instrumentation==0.1.72",
    "langfuse==5.2.0", "wrapt==2.5.2", "pydantic==2.14.4", "click==8.5.1", "aiohttp==3.14.5",
    "colorama==0.4.6", "cuid==0.4", "Deprecated==1.3.1", "Jinja2==3.1.6", "tenacity==9.2.1",
    "opentelemetry-semantic-conventions-ai==0.5.1", "opentelemetry-instrumentation-logging==0.66b2",
]
NO_DEPS = ["traceloop-sdk==0.62.4", "opentelemetry-instrumentation-threading==0.66b1"]
PROMPT = "hello, what is the weather like today?"


def environment() -> Path:
    digest = hashlib.sha256(json.dumps([sys.version_info[:2], PINS, NO_DEPS]).encode()).hexdigest()[:12]
    folder = Path.home() / ".cache" / "galtea-otel" / f"bench-peers-{digest}"
    python = folder / "bin" / "python"
    if not (folder / "ready").exists():
        print(f"installing the peers into {folder} (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *PINS], check=True)
        subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True)
        (folder / "ready").write_text("\n".join(PINS + NO_DEPS) + "\n")
    return python


# --------------------------------------------------------------------------- the measuring side (the peers' env)

def per_call(fn: Callable[[str], str], calls: int) -> float:
    start = time.thread_time()
    for _ in range(calls):
        fn(PROMPT)
    return (time.thread_time() - start) / calls * 1e6


def measure(calls: int, rounds: int) -> None:
    os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
    from importlib.metadata import version

    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Noop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def plain_provider() -> TracerProvider:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Noop(), max_queue_size=1 << 20))
        return provider

    def echo(prompt: str) -> str:
        return "echo: " + prompt

    tracer = plain_provider().get_tracer("bench")

    def bare(prompt: str) -> str:
        with tracer.start_as_current_span("chat") as span:
            span.set_attribute("galtea.span.type", "GENERATION")
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("galtea.span.input", json.dumps(prompt))
            out = echo(prompt)
            span.set_attribute("galtea.span.output", json.dumps(out))
            return out

    subjects: dict[str, tuple[Callable[[str], str], contextvars.Context | None]] = {
        "bare span, plain provider": (bare, None)}
    notes: list[str] = []

    sys.path.insert(0, str(ROOT))
    import galtea_otel

    galtea_otel.configure(tracer_provider=TracerProvider(), exporter=Noop())
    in_session = contextvars.copy_context()
    in_session.run(lambda: galtea_otel.session(custom_id="bench", version="1").__enter__())
    subjects["galtea-otel @inference (in a session)"] = (galtea_otel.inference(echo), in_session)

    trace.set_tracer_provider(plain_provider())
    from galtea.utils.tracing import traced

    subjects[f"galtea {version('galtea')} @traced"] = (traced(type="GENERATION")(echo), None)

    from openinference.instrumentation import OITracer, TraceConfig

    oi = OITracer(plain_provider().get_tracer("bench"), config=TraceConfig())
    subjects[f"openinference-instrumentation {version('openinference-instrumentation')} @tracer.llm"] = (
        oi.llm(echo), None)

    try:
        import traceloop.sdk.tracing.tracing as traceloop_tracing
        from opentelemetry.trace import ProxyTracerProvider
        from traceloop.sdk import Traceloop
        from traceloop.sdk.decorators import task

        # Traceloop.init adds its processors to the global provider when one is set: here the plain one galtea's
        # @traced records on, which would then pay Traceloop's processor too. Shown no global provider, it makes
        # a provider of its own (its attempt to make that one global is refused, with a warning).
        found = traceloop_tracing.get_tracer_provider
        traceloop_tracing.get_tracer_provider = ProxyTracerProvider  # type: ignore[assignment]
        try:
            Traceloop.init(app_name="bench", exporter=Noop(), telemetry_enabled=False, disable_batch=False)
        finally:
            traceloop_tracing.get_tracer_provider = found
        subjects[f"traceloop-sdk {version('traceloop-sdk')} @task"] = (task(name="chat")(echo), None)
    except Exception as exc:
        notes.append(f"traceloop-sdk: not measured ({type(exc).__name__}: {exc})")

    try:
        from langfuse import Langfuse, observe

        Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host="http://127.0.0.1:9",
                 tracer_provider=TracerProvider(), span_exporter=Noop())
        subjects[f"langfuse {version('langfuse')} @observe"] = (observe(as_type="generation")(echo), None)
    except Exception as exc:
        notes.append(f"langfuse: not measured ({type(exc).__name__}: {exc})")

    def timed(fn: Callable[[str], str], ctx: contextvars.Context | None, n: int) -> float:
        return ctx.run(per_call, fn, n) if ctx is not None else per_call(fn, n)

    results: dict[str, list[float]] = {name: [] for name in subjects}
    for fn, ctx in subjects.values():
        timed(fn, ctx, 500)  # warm up
    items = list(subjects.items())
    for r in range(rounds):
        for name, (fn, ctx) in (items if r % 2 else items[::-1]):
            results[name].append(timed(fn, ctx, calls))
    base = results["bare span, plain provider"]
    print(f"{calls:,} calls x {rounds} interleaved rounds, per-call CPU of the calling thread; "
          f"Python {sys.version.split()[0]}, opentelemetry-sdk {version('opentelemetry-sdk')}")
    print(f"{'decorator':58s} {'us/call':>8s}  ratio to the plain bare span: median (min-max)")
    for name, values in results.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(f"{name:58s} {statistics.median(values):8.2f}  {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})")
    for note in notes:
        print(note)
    os._exit(0)  # the peers' exit hooks would try to reach their backends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 calls x 9 rounds")
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 2_000, 9
    if args.inside:
        measure(args.calls, args.rounds)
        return
    python = environment()
    command: list[Any] = [str(python), __file__, "--inside", "--calls", str(args.calls), "--rounds",
                          str(args.rounds)]
    sys.exit(subprocess.run(command, check=False).returncode)


if __name__ == "__main__":
    main()
