"""The session exporter's instructions a span, counted by callgrind: a figure that does not move with the load.

    python benchmarks/bench_export_instructions.py                       # about 3 minutes a tree (valgrind)
    python benchmarks/bench_export_instructions.py --tree /path/to/other/checkout   # that tree's too, same spans

``bench_export.py``'s app (``--sessions`` concurrent asyncio sessions x 20 turns, 1 KB in and out) runs once
into an exporter that keeps its spans; they are cut into the session exporter's 4,096-span batches and exported
into a fresh SQLite store. Each tree is counted twice under ``valgrind --tool=callgrind``: exporting every
batch, and exporting one span (imports, opening the store, the app itself); the difference over the spans is
the export's instructions a span. Wall-clock CPU on a shared 2-core machine moves 20-30% from run to run; this
count is the same for the same code and spans (``PYTHONHASHSEED`` fixed), so it tells small changes apart. It
says nothing of system time (the kernel's side of SQLite's writes): ``bench_export.py`` measures the whole.
Needs valgrind (Debian's package).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH = 4096  # SessionExporter.export_batch_size


def export(sessions: int, everything: bool) -> int:
    """Run the app, then export its spans (all of them, or one); the number of spans the app made."""
    sys.path.insert(0, str(HERE))
    import bench_export
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    import galtea_otel
    from galtea_otel.export.exporter import SessionExporter

    class Keep(SpanExporter):
        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

    kept = Keep()
    provider = TracerProvider()
    galtea_otel.configure(exporter=kept, tracer_provider=provider, max_queue_size=10**6,
                          schedule_delay_millis=10**7)
    asyncio.run(bench_export.app(sessions, 20))
    galtea_otel.flush(timeout_s=600)
    galtea_otel.shutdown()
    provider.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        exporter = SessionExporter(f"sqlite:///{Path(tmp) / 'store.db'}")
        batches = [kept.spans[i:i + BATCH] for i in range(0, len(kept.spans), BATCH)] if everything \
            else [kept.spans[:1]]
        for batch in batches:
            exporter.export(batch)
        exporter.shutdown()
    return len(kept.spans)


def count(tree: Path | None, sessions: int, everything: bool) -> tuple[int, int]:
    """(instructions, spans) of one run under callgrind, with ``tree``'s galtea_otel first on the path."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={Path(tmp) / 'cg.out'}", sys.executable,
             __file__, "--run", "all" if everything else "one", "--sessions", str(sessions)],
            env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    spans = re.search(r"^spans (\d+)$", out.stdout, re.MULTILINE)
    if found is None or spans is None:
        raise SystemExit(f"no count from valgrind:\n{out.stderr[-2000:]}\n{out.stdout[-2000:]}")
    return int(found.group(1)), int(spans.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=250)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another checkout whose galtea_otel to count too (repeatable)")
    parser.add_argument("--run", choices=("all", "one"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(f"spans {export(args.sessions, args.run == 'all')}")
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    print(f"bench_export.py's app, {args.sessions} sessions x 20 turns, exported in {BATCH:,}-span batches into "
          "SQLite; instructions of the export (all batches minus one span), callgrind, PYTHONHASHSEED=0")
    for tree in (None, *args.tree):
        with ThreadPoolExecutor(2) as pool:  # the two runs side by side: callgrind counts, the clock does not matter
            runs = pool.submit(count, tree, args.sessions, True), pool.submit(count, tree, args.sessions, False)
            (total, spans), (setup, _) = (run.result() for run in runs)
        label = "this tree" if tree is None else str(tree)
        print(f"{label:40s} {(total - setup) / spans / 1000:8.1f} K instructions a span ({spans:,} spans)")


if __name__ == "__main__":
    main()
