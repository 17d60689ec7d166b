"""RELIABILITY 19 (issue 4, point 6), coverage-guided: the atheris targets of ``atheris_targets.py`` (the protobuf
decoder, the JSON decoder, and decode -> translate -> ``Pipeline.ingest`` into SQLite) for a fixed budget.

Each target runs in its own process (libFuzzer ends the process when it is done or has found a crash), seeded with
real OTLP bodies from the real SDK encoder, with a fixed ``-seed`` (the same inputs every run), a budget of
``-runs`` executions capped by ``-max_total_time`` seconds, and a per-input ``-timeout`` (a hang is a failure).
It passes when the fuzzer exits 0 and wrote no crash, timeout or out-of-memory artifact; else it fails with the
reproducer's path and the fuzzer's report.

``GALTEA_OTEL_ATHERIS_RUNS=N`` / ``GALTEA_OTEL_ATHERIS_SECONDS=S`` change the budget (per target: executions, and
the cap in seconds). Longer campaigns by hand: see ``atheris_targets.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (it has wheels for Linux x86-64 only)")

from .seeds import write_corpus, write_dictionary

pytestmark = pytest.mark.fuzz  # a fuzzing budget: run with -m fuzz (.ci/run does)

ROOT = Path(__file__).resolve().parents[2]
# Executions per target: about 4 s (decoders, ~25,000 exec/s) and 11 s (pipeline, ~5,000 exec/s) here, 22 s for
# the four tests; -max_total_time caps each on a slower machine.
_RUNS = os.environ.get("GALTEA_OTEL_ATHERIS_RUNS")
RUNS = {target: int(_RUNS) if _RUNS else runs for target, runs in
        {"proto": 100_000, "json": 100_000, "pipeline": 60_000}.items()}
SECONDS = int(os.environ.get("GALTEA_OTEL_ATHERIS_SECONDS", "15"))
PER_INPUT_TIMEOUT = 10  # seconds: an input that takes longer is a hang


def run_target(target: str, tmp_path: Path, *, runs: int | None = None, seconds: int = SECONDS,
               env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    """Fuzz ``target`` for the budget; return the finished process and the artifacts (reproducers) it wrote."""
    corpus = tmp_path / "corpus"
    write_corpus(target, corpus)
    dictionary = tmp_path / "otlp.dict"
    write_dictionary(dictionary)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    command = [
        sys.executable, "-m", "tests.fuzz.atheris_targets", target, str(corpus),
        f"-runs={runs or RUNS[target]}", f"-max_total_time={seconds}", f"-timeout={PER_INPUT_TIMEOUT}", "-seed=1",
        f"-dict={dictionary}", "-rss_limit_mb=2048", f"-artifact_prefix={artifacts}/", "-print_final_stats=1",
    ]
    proc = subprocess.run(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
        timeout=seconds + 60,  # the fuzzer stops itself; this is only for a wedged process
        env={**os.environ, **(env or {}), "GALTEA_OTEL_FUZZ_WORKDIR": str(workdir), "PYTHONHASHSEED": "0"},
    )
    return proc, sorted(artifacts.iterdir())


def _report(proc: subprocess.CompletedProcess[str], artifacts: list[Path], target: str) -> str:
    log = "\n".join(line for line in proc.stdout.splitlines() if not line.startswith("INFO: Instrumenting"))
    replay = "".join(f"\n  reproducer: {a}\n  replay: python -m tests.fuzz.atheris_targets {target} {a}"
                     for a in artifacts)
    return f"atheris target {target!r} exited {proc.returncode}{replay}\n--- fuzzer output (tail) ---\n{log[-6000:]}"


@pytest.mark.parametrize("target", ["proto", "json", "pipeline"])
def test_atheris_target(target: str, tmp_path: Path) -> None:
    proc, artifacts = run_target(target, tmp_path)
    assert proc.returncode == 0 and not artifacts, _report(proc, artifacts, target)
    # The budget ran: libFuzzer's final line, not an early exit of some other kind.
    assert "Done " in proc.stdout, _report(proc, artifacts, target)


def test_atheris_harness_catches_a_planted_bug(tmp_path: Path) -> None:
    """The harness can fail: with a bug planted in the protobuf decoder (env flag), the fuzzer finds an input that
    triggers it, writes it as a crash artifact and exits non-zero, and the input replays the crash."""
    proc, artifacts = run_target("proto", tmp_path, runs=200_000, seconds=20,
                                 env={"GALTEA_OTEL_FUZZ_PLANT_BUG": "1"})
    assert proc.returncode != 0, _report(proc, artifacts, "proto")
    crashes = [a for a in artifacts if a.name.startswith("crash-")]
    assert crashes, _report(proc, artifacts, "proto")
    assert "IndexError: planted bug" in proc.stdout, _report(proc, artifacts, "proto")
    replay = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_targets", "proto", str(crashes[0])], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", timeout=60,
        env={**os.environ, "GALTEA_OTEL_FUZZ_PLANT_BUG": "1"},
    )
    assert replay.returncode != 0 and "IndexError: planted bug" in replay.stdout, replay.stdout[-3000:]
