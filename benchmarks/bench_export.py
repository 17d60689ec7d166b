"""Spans per second that SessionExporter translates and commits to SQLite, against the OpenTelemetry SDK's own
OTLP protobuf encoding (``encode_spans`` + ``SerializeToString``) of the same spans, measured side by side.

    python benchmarks/bench_export.py [--sessions 1000] [--turns 5] [--rounds 5]

(1000 sessions of 5 turns: 17,000 spans, about 17 MB, so each round includes the store's steady state, WAL
checkpoints included.)

Bar (issue 2): exporter / OTLP encoding >= 1.0x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _spans import batches, make_spans

from galtea_otel.export.exporter import SessionExporter


def run_export(chunks: list, folder: Path, round_no: int) -> float:  # type: ignore[type-arg]
    exporter = SessionExporter(f"sqlite:///{folder / f'bench-{round_no}.db'}")
    exporter.export(chunks[0][:1])  # open the store outside the timed part
    start = time.perf_counter()
    for chunk in chunks:
        if exporter.export(chunk) is not SpanExportResult.SUCCESS:
            raise SystemExit("export failed: see the log above")
    elapsed = time.perf_counter() - start
    stored = sum(s.turn_count for s in exporter.pipeline.store.list_sessions(limit=10**9))
    exporter.shutdown()
    if stored != expected_turns(chunks):
        raise SystemExit(f"stored {stored} turns, expected {expected_turns(chunks)}")
    return elapsed


def expected_turns(chunks: list) -> int:  # type: ignore[type-arg]
    return sum(1 for c in chunks for s in c if s.name == "chat")


def run_encode(chunks: list) -> float:  # type: ignore[type-arg]
    start = time.perf_counter()
    for chunk in chunks:
        encode_spans(chunk).SerializeToString()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spans = make_spans(args.sessions, args.turns)
    chunks = batches(spans)
    n = len(spans)
    export_rates, encode_rates, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # interleaved, so both see the same machine load
            encode = n / run_encode(chunks)
            export = n / run_export(chunks, Path(tmp), r)
            encode_rates.append(encode)
            export_rates.append(export)
            ratios.append(export / encode)
    print(f"spans: {n} in batches of 512, {args.rounds} interleaved rounds")
    print(f"OTLP encode_spans+serialize: {statistics.median(encode_rates):,.0f} spans/s (median)")
    print(f"SessionExporter -> SQLite:   {statistics.median(export_rates):,.0f} spans/s (median)")
    print(f"ratio exporter/encode: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); bar >= 1.0x")


if __name__ == "__main__":
    main()
