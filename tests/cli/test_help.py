"""``--help`` command lists show whole first sentences, not click's 45-character cut (issue 8, point 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("galtea-otel")


@pytest.mark.parametrize("group", [[], ["sessions"], ["test-cases"], ["sync"]])
def test_command_summaries_are_not_cut(group: list[str]) -> None:
    proc = subprocess.run([str(SCRIPT), *group, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listing = proc.stdout.split("Commands:", 1)[1]
    assert listing.strip(), proc.stdout
    assert "..." not in listing, proc.stdout
