"""How fast ``galtea-otel ui`` starts, and what importing the package costs: this checkout against an earlier one.

    python benchmarks/bench_ui_start.py [--before REV] [--rounds 9] [--sessions 1000]

``--before`` (default ``3da7e23``, main before the UI's import paths were made lazy) is exported with
``git archive`` into a temporary folder; both trees run on the same interpreter and packages (``PYTHONPATH``
puts the tree first), on the same SQLite store (``--sessions`` sessions, one LLM span each, filled through the
store's own write primitives as ``bench_ui.py`` does), in interleaved rounds. Per round and tree:

- *address line*: from spawning ``galtea-otel --store URL ui --port P`` (the console script's own
  ``from galtea_otel.cli.main import main; main()``) to its "galtea-otel UI on ..." line on stdout;
- *first 200*: from the spawn to the first ``200`` of ``GET /`` (the sessions page, 50 rows, rendered), the
  request sent as soon as the line is read;
- ``python -X importtime``, summed over the top-level imports (the whole tree each pulls in), of
  ``import galtea_otel.cli.main, galtea_otel.ui.server`` (the UI's import path) and of
  ``import galtea_otel; galtea_otel.session; galtea_otel.inference`` (the instrumentation path), with whether
  the OpenTelemetry SDK and pydantic were loaded.

Medians (min-max) and the after / before ratios are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

UI_IMPORT = "import galtea_otel.cli.main, galtea_otel.ui.server"
API_IMPORT = "import galtea_otel; galtea_otel.session; galtea_otel.inference"
PROBE = ("import sys; {code}; print(int(any(m.startswith('opentelemetry.sdk') for m in sys.modules)),"
         " int('pydantic' in sys.modules))")


def export_tree(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "galtea_otel"],
                             check=True, capture_output=True).stdout
    tar_path = into / "before.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into / "before")  # our own repository's archive
    return into / "before"


def env_for(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env.pop("GALTEA_OTEL_STORE", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_once(tree: Path, store_url: str, cwd: Path) -> tuple[float, float]:
    """(seconds to the address line, seconds to the first 200 of GET /) for one start of the UI."""
    port = free_port()
    begin = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from galtea_otel.cli.main import main; main()", "--store", store_url, "ui",
         "--port", str(port)], cwd=cwd, env=env_for(tree), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        ready = time.perf_counter() - begin
        if "galtea-otel UI on" not in line:
            raise RuntimeError(f"the UI did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"GET / answered {answer.status}")
        first = time.perf_counter() - begin
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return ready, first


def import_ms(tree: Path, code: str, cwd: Path) -> tuple[float, bool, bool]:
    """``-X importtime``: the cumulative microseconds of every top-level import after ``site``, in ms; and
    whether the OpenTelemetry SDK and pydantic ended up loaded."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE.format(code=code)], cwd=cwd,
                          env=env_for(tree), capture_output=True, text=True, check=True)
    total = 0
    after_site = False
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        top = name.startswith(" ") and not name.startswith("  ")
        if top and name.strip() == "site":
            after_site = True
            continue
        if top and after_site:
            total += int(cumulative)
    sdk, pyd = done.stdout.split()
    return total / 1000, sdk == "1", pyd == "1"


def fmt(values: list[float], scale: float = 1.0) -> str:
    return f"{statistics.median(values) * scale:.0f} ({min(values) * scale:.0f}-{max(values) * scale:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="3da7e23", help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--import-rounds", type=int, default=31,
                        help="interleaved rounds of the two import measures (cheap, and noisier than a start)")
    args = parser.parse_args()

    from bench_ui import fill

    from galtea_otel.store import open_store

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        trees = {"before": export_tree(args.before, tmp), "after": ROOT}
        db = tmp / "ui.db"
        store = open_store(f"sqlite:///{db}")
        fill(store, args.sessions)
        store.close()
        url = f"sqlite:///{db}"
        ready: dict[str, list[float]] = {k: [] for k in trees}
        first: dict[str, list[float]] = {k: [] for k in trees}
        ui_imp: dict[str, list[float]] = {k: [] for k in trees}
        api_imp: dict[str, list[float]] = {k: [] for k in trees}
        loaded: dict[str, tuple[bool, bool, bool, bool]] = {}
        for tree in trees.values():  # warm the file cache and the bytecode of both trees
            start_once(tree, url, tmp)
            import_ms(tree, API_IMPORT, tmp)
        for _ in range(args.rounds):
            for name, tree in trees.items():
                r, f = start_once(tree, url, tmp)
                ready[name].append(r)
                first[name].append(f)
        for _ in range(args.import_rounds):
            for name, tree in trees.items():
                ui_ms, ui_sdk, ui_pyd = import_ms(tree, UI_IMPORT, tmp)
                api_ms, api_sdk, api_pyd = import_ms(tree, API_IMPORT, tmp)
                ui_imp[name].append(ui_ms)
                api_imp[name].append(api_ms)
                loaded[name] = (ui_sdk, ui_pyd, api_sdk, api_pyd)
        modules = {name: subprocess.run(
            [sys.executable, "-c", API_IMPORT + "; import sys; print('\\n'.join(sorted(sys.modules)))"], cwd=tmp,
            env=env_for(tree), capture_output=True, text=True, check=True).stdout.split()
            for name, tree in trees.items()}

    def ratio(table: dict[str, list[float]]) -> str:
        return f"**{statistics.median(table['after']) / statistics.median(table['before']):.2f}x**"

    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; before = {args.before}, {args.rounds} start rounds,"
          f" {args.import_rounds} import rounds, {args.sessions:,} sessions")
    print("| median (min-max) | before | after | after / before |")
    print("|---|---:|---:|---:|")
    print(f"| `galtea-otel ui`: spawn to address line (ms) | {fmt(ready['before'], 1000)} |"
          f" {fmt(ready['after'], 1000)} | {ratio(ready)} |")
    print(f"| `galtea-otel ui`: spawn to first 200 of `GET /` (ms) | {fmt(first['before'], 1000)} |"
          f" {fmt(first['after'], 1000)} | {ratio(first)} |")
    print(f"| `-X importtime` `{UI_IMPORT}` (ms) | {fmt(ui_imp['before'])} | {fmt(ui_imp['after'])} |"
          f" {ratio(ui_imp)} |")
    print(f"| `-X importtime` `{API_IMPORT}` (ms) | {fmt(api_imp['before'])} | {fmt(api_imp['after'])} |"
          f" {ratio(api_imp)} |")
    same = modules["before"] == modules["after"]
    print(f"instrumentation path: the same {len(modules['after'])} modules loaded before and after: {same}")
    for name in trees:
        ui_sdk, ui_pyd, api_sdk, api_pyd = loaded[name]
        print(f"{name}: UI path loads SDK={ui_sdk} pydantic={ui_pyd}; instrumentation path SDK={api_sdk}"
              f" pydantic={api_pyd}")
    print(json.dumps({"ready": ready, "first": first, "ui_import_ms": ui_imp, "api_import_ms": api_imp}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
