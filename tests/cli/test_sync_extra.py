"""``galtea-otel sync`` without the ``galtea`` extra names the extra to install (issue 8, point 6).

The real CLI in a subprocess where ``httpx`` cannot be imported (``sys.modules['httpx'] = None`` makes every
``import httpx`` raise ImportError, as when it is not installed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import sys
sys.modules[{module!r}] = None
from galtea_otel.cli.main import main
main(["--store", sys.argv[1], "sync"], prog_name="galtea-otel")
"""


def test_sync_without_httpx_says_which_extra(tmp_path: Path) -> None:
    for module in ("httpx", "galtea"):
        proc = subprocess.run([sys.executable, "-c", CODE.format(module=module), f"sqlite:///{tmp_path / 's.db'}"],
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "GALTEA_API_KEY": "key"})
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "pip install 'galtea-otel[galtea]'" in proc.stderr, proc.stderr
        assert f"{module} is not installed" in proc.stderr, proc.stderr
