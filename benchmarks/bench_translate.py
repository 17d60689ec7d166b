"""Per-span cost of the translator (``galtea_otel.translate.translator.translate``): this checkout against a
baseline revision of the same repository, side by side in one run.

    python benchmarks/bench_translate.py [--quick] [--baseline main] [--dumps DIR] [--rounds 9]

The corpus: the galtea-otel spans the other benchmarks use (``_spans.make_spans``: session, markers, inference, LLM
client and tool spans) and, with ``--dumps DIR``, every ``DIR/<producer>/spans.json`` that the live-package
conformance tests write (``GALTEA_OTEL_SPAN_DUMPS=DIR pytest -m producers tests/conformance``: what LangChain,
LlamaIndex, openai-agents, openai-v2, pydantic-ai and the Vercel AI SDK really send). Each side runs in a subprocess
of its own importing its own ``galtea_otel`` (the baseline is ``git archive``d into a temporary folder); rounds
alternate which side goes first. Each round translates the whole corpus ``--repeat`` times after a warm-up and
reports the best repetition's CPU time (``time.process_time``: the machine is shared) per span, per corpus group;
the figure is the median over rounds of new / baseline, with min-max.

``--otlp`` adds the receiver benchmark's interleaved workload (``bench_receiver.interleaved_bodies``: 400 sessions x
1 turn of 3 spans per request) as OTLP/protobuf bodies, and times per span, on each side, its decode
(``decode_proto``), its translation, and both (the groups ``otlp decode``, ``otlp translate``, ``otlp both``);
``--ingest`` also the receiver minus HTTP on them (``bench_receiver.in_process``: gunzip, decode, ``Pipeline.ingest``
into a fresh SQLite file; wall time per span, best of the repetitions: the group ``otlp ingest``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# --- the corpus (plain JSON, the shape of the conformance tests' span dumps) ---------------------------------------

def _own_spans() -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from _spans import make_spans  # type: ignore[import-not-found]

    out = []
    for span in make_spans(sessions=20, turns=5):
        ctx, parent = span.context, span.parent
        out.append({
            "name": span.name, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}",
            "parent_span_id": f"{parent.span_id:016x}" if parent else None,
            "start_time_unix_nano": span.start_time, "end_time_unix_nano": span.end_time,
            "status": {"code": "STATUS_CODE_UNSET", "message": ""},
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
            "events": [], "scope": {"name": "bench"}, "resource": dict(span.resource.attributes),
        })
    return out


def corpus(dumps: Path | None) -> dict[str, list[dict[str, Any]]]:
    groups = {"galtea-otel": _own_spans()}
    if dumps is not None:
        for path in sorted(dumps.glob("*/spans.json")):
            groups[path.parent.name] = json.loads(path.read_text())
    return groups


# --- a worker: one side, one round ---------------------------------------------------------------------------------

_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def otlp_bodies(requests: int = 5) -> list[str]:
    """The receiver benchmark's interleaved bodies (decompressed), base64 for the corpus file."""
    import base64
    import gzip

    sys.path.insert(0, str(Path(__file__).parent))
    from _otlp import TurnFactory  # type: ignore[import-not-found]
    from bench_receiver import interleaved_bodies  # type: ignore[import-not-found]

    bodies = interleaved_bodies(TurnFactory(), 400, requests, 1_000_000)
    return [base64.b64encode(gzip.decompress(body)).decode() for body in bodies]


def _best(work: Any, count: int, repeat: int) -> float:
    """The best of ``repeat`` repetitions of ``work()`` (enough passes for ~50 ms), in CPU seconds per item."""
    started = time.process_time()
    work()
    passes = max(1, int(0.05 / max(time.process_time() - started, 1e-6)))
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(passes):
            work()
        best = min(best, (time.process_time() - started) / (passes * count))
    return best


def ingest_worker(bodies: list[bytes], repeat: int, result: dict[str, float]) -> None:
    import gzip

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_receiver import in_process  # type: ignore[import-not-found]

    compressed = [gzip.compress(body, 6) for body in bodies]
    with tempfile.TemporaryDirectory() as tmp:
        rates = [in_process(compressed, f"sqlite:///{Path(tmp) / f'ingest{i}.db'}") for i in range(repeat)]
    result["otlp ingest"] = 1 / max(rates)


def otlp_worker(encoded: list[str], repeat: int, result: dict[str, float]) -> None:
    import base64

    from galtea_otel.decode.otlp_proto import decode_proto
    from galtea_otel.translate.translator import translate

    bodies = [base64.b64decode(body) for body in encoded]
    spans = [span for body in bodies for span in decode_proto(body).spans]

    def decode() -> None:
        for body in bodies:
            decode_proto(body)

    def translate_all() -> None:
        for span in spans:
            translate(span, received_ns=0)

    def both() -> None:
        for body in bodies:
            for span in decode_proto(body).spans:
                translate(span, received_ns=0)

    result["otlp decode"] = _best(decode, len(spans), repeat)
    result["otlp translate"] = _best(translate_all, len(spans), repeat)
    result["otlp both"] = _best(both, len(spans), repeat)
    if os.environ.get("BENCH_TRANSLATE_INGEST"):
        ingest_worker(bodies, max(1, repeat // 2), result)


def worker(corpus_file: str, repeat: int) -> None:
    import galtea_otel
    from galtea_otel.spandata import EventData, SpanData
    from galtea_otel.translate.translator import translate

    groups = json.loads(Path(corpus_file).read_text())
    result: dict[str, float] = {}
    otlp = groups.pop("otlp", None)
    for group, raw in groups.items():
        spans = [SpanData(
            trace_id=s["trace_id"], span_id=s["span_id"], parent_span_id=s["parent_span_id"], name=s["name"],
            start_ns=s["start_time_unix_nano"], end_ns=s["end_time_unix_nano"],
            status_code=_CODES[s["status"]["code"]], status_message=s["status"]["message"],
            attributes=s["attributes"],
            events=[EventData(e["name"], e["time_unix_nano"], e["attributes"]) for e in s["events"]],
            resource=s.get("resource", {}), scope=s["scope"]["name"]) for s in raw]
        # Enough passes that one repetition takes about 50 ms.
        started = time.process_time()
        for span in spans:
            translate(span, received_ns=0)
        passes = max(1, int(0.05 / max(time.process_time() - started, 1e-6)))
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(passes):
                for span in spans:
                    translate(span, received_ns=0)
            best = min(best, (time.process_time() - started) / (passes * len(spans)))
        result[group] = best
    if otlp is not None:
        otlp_worker(otlp, repeat, result)
    print(json.dumps({"module": galtea_otel.__file__, "times": result}))


# --- the driver ----------------------------------------------------------------------------------------------------

def extract(revision: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "galtea_otel"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_side(path: Path, corpus_file: Path, repeat: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(path), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--worker", str(corpus_file), "--repeat", str(repeat)],
                          env=env, cwd=path, check=True, capture_output=True, text=True)
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    if not Path(answer["module"]).resolve().is_relative_to(path.resolve()):
        raise SystemExit(f"the worker for {path} imported {answer['module']}")
    return dict(answer["times"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds of 5 repetitions")
    parser.add_argument("--baseline", default="main", help="git revision to compare against (default: main)")
    parser.add_argument("--dumps", type=Path, help="a GALTEA_OTEL_SPAN_DUMPS folder of producer span dumps")
    parser.add_argument("--otlp", action="store_true", help="add the receiver's interleaved OTLP workload")
    parser.add_argument("--ingest", action="store_true", help="with --otlp: also time Pipeline.ingest of it")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.repeat)
        return
    if args.quick:
        args.rounds, args.repeat = 5, 5
    groups: dict[str, Any] = dict(corpus(args.dumps))
    if args.otlp:
        groups["otlp"] = otlp_bodies()
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpus.json"
        corpus_file.write_text(json.dumps(groups))
        if args.otlp:
            del groups["otlp"]
            spans = 400 * 5 * 3
            names = ["otlp decode", "otlp translate", "otlp both"] + (["otlp ingest"] if args.ingest else [])
            groups.update({name: [None] * spans for name in names})
            if args.ingest:
                os.environ["BENCH_TRANSLATE_INGEST"] = "1"
        base = extract(args.baseline, Path(tmp) / "baseline")
        sides = {"baseline": base, "this checkout": ROOT}
        short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                               capture_output=True, text=True).stdout.strip()
        print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}; baseline {args.baseline} ({short}); "
              f"{sum(len(v) for k, v in groups.items() if not k.startswith('otlp'))} spans in {len(groups)} groups; "
              f"{args.rounds} rounds x {args.repeat} repetitions")
        times: dict[str, dict[str, list[float]]] = {name: {} for name in sides}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                for group, seconds in run_side(sides[name], corpus_file, args.repeat).items():
                    times[name].setdefault(group, []).append(seconds)
    print(f"\n{'group':14} {'spans':>6} {'baseline us/span':>17} {'this us/span':>13} {'ratio (min-max)':>22}")
    all_ratios: list[float] = []
    for group, raw in groups.items():
        old, new = times["baseline"][group], times["this checkout"][group]
        ratios = [n / o for n, o in zip(new, old, strict=True)]
        all_ratios += ratios
        print(f"{group:14} {len(raw):6d} {statistics.median(old) * 1e6:17.1f} {statistics.median(new) * 1e6:13.1f} "
              f"{statistics.median(ratios):8.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    # The whole corpus per span: each round's total over its groups, weighted by their span counts.
    counts = {group: len(raw) for group, raw in groups.items() if not group.startswith("otlp")}
    total_old = [sum(times["baseline"][g][r] * counts[g] for g in counts) for r in range(args.rounds)]
    total_new = [sum(times["this checkout"][g][r] * counts[g] for g in counts) for r in range(args.rounds)]
    overall = [n / o for n, o in zip(total_new, total_old, strict=True)]
    print(f"{'all corpus':14} {sum(counts.values()):6d} "
          f"{statistics.median(total_old) / sum(counts.values()) * 1e6:17.1f} "
          f"{statistics.median(total_new) / sum(counts.values()) * 1e6:13.1f} "
          f"{statistics.median(overall):8.2f}x ({min(overall):.2f}-{max(overall):.2f})")


if __name__ == "__main__":
    main()
