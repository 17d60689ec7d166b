"""``galtea-otel --version`` (issue 8, point 6): the installed distribution's version, through the real script."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def test_version_prints_the_installed_version() -> None:
    script = Path(sys.executable).with_name("galtea-otel")
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"galtea-otel {version('galtea-otel')}"
