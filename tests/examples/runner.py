"""Run the example scripts and the ``galtea-otel`` command in subprocesses, against a given store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 120


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"  # an absolute path gives sqlite:////...


def clean_env(store_url: str | None) -> dict[str, str]:
    """A child's environment: this repo importable, and no galtea-otel settings but the store we pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALTEA_OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("NO_COLOR", None)
    if store_url is not None:
        env["GALTEA_OTEL_STORE"] = store_url
    return env


def run_example(name: str, store_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` as a user would (``python examples/NAME.py``) and insist that it exits 0."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, env=clean_env(store_url), capture_output=True,
        text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def console_script() -> str | None:
    """The installed ``galtea-otel`` script of this interpreter's environment, if the package is installed."""
    bin_dir = Path(sys.executable).parent
    found = shutil.which("galtea-otel", path=str(bin_dir))
    return found


def run_cli(args: list[str], cwd: Path, store_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``galtea-otel`` console script (the caller skips when it is not installed)."""
    script = console_script()
    assert script is not None
    return subprocess.run(
        [script, *args], cwd=cwd, env=clean_env(store_url), capture_output=True, text=True, timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
