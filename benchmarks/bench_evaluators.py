"""The exporter with evaluators configured against the exporter without, on the same spans (issue 11): what
queueing ended sessions costs the export path, and that the evaluators themselves run beside it.

    python benchmarks/bench_evaluators.py [--sessions 500] [--turns 5] [--rounds 3]

Each round exports the spans of ``--sessions`` completed sessions through ``SessionExporter`` to a fresh SQLite
file, once plain and once with three built-in evaluators (failed-turn rate, output is JSON, latency budget) on
a runner of 2 workers; the export time is measured up to the last export call (the evaluators keep running in
the background), then the runner is drained and the evaluated sessions counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace.export import SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _spans import batches, make_spans

from galtea_otel.evaluate.evaluators import failed_turn_rate, latency_budget, output_is_json
from galtea_otel.evaluate.runner import EvaluationRunner
from galtea_otel.export.exporter import SessionExporter


def run(chunks: list, path: Path, evaluate: bool) -> tuple[float, int]:  # type: ignore[type-arg]
    exporter = SessionExporter(f"sqlite:///{path}")
    runner = None
    if evaluate:
        runner = EvaluationRunner([failed_turn_rate(), output_is_json(), latency_budget(1000)],
                                  shutdown_timeout_s=600)
        exporter.evaluators = runner
    exporter.export(chunks[0][:1])  # open the store outside the timed part
    start = time.perf_counter()
    for chunk in chunks:
        if exporter.export(chunk) is not SpanExportResult.SUCCESS:
            raise SystemExit("export failed")
    elapsed = time.perf_counter() - start
    exporter.shutdown()  # drains the runner
    return elapsed, runner.sessions_evaluated if runner is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spans = make_spans(args.sessions, args.turns)
    chunks = batches(spans)
    plain, evaluated, ratios, counts = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # interleaved: both see the same machine load
            base, _ = run(chunks, Path(tmp) / f"plain-{r}.db", False)
            with_evals, count = run(chunks, Path(tmp) / f"evals-{r}.db", True)
            plain.append(len(spans) / base)
            evaluated.append(len(spans) / with_evals)
            ratios.append(base / with_evals)
            counts.append(count)
    print(f"spans: {len(spans)} ({args.sessions} sessions) in batches of 512, {args.rounds} interleaved rounds")
    print(f"exporter without evaluators: {statistics.median(plain):,.0f} spans/s (median)")
    print(f"exporter with 3 evaluators:  {statistics.median(evaluated):,.0f} spans/s (median)")
    print(f"ratio with/without: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, "
          f"max {max(ratios):.2f}x); sessions evaluated per round: {counts}")


if __name__ == "__main__":
    main()
