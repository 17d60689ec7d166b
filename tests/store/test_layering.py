"""Arrows point down the pipeline: the stores and the instrumentation's configuration know nothing of the Galtea
sync (its outbox stands on the store's plain-SQL handle), and the sync names the version without importing the
configuration. Each check runs in a fresh interpreter and looks at ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.store.test_stores import PG_URL, _require_pg

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _under(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(package + ".")]


def test_opening_a_sqlite_store_imports_no_sync(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    modules = _modules_after(
        "import galtea_otel.store, galtea_otel.store.base, galtea_otel.store.sqlite\n"
        f"from galtea_otel.store import open_store\nopen_store({url!r}).close()")
    assert "galtea_otel.store.sqlite" in modules
    assert _under(modules, "galtea_otel.sync") == []


def test_opening_a_postgres_store_imports_no_sync() -> None:
    _require_pg()
    modules = _modules_after(f"from galtea_otel.store import open_store\nopen_store({PG_URL!r}).close()")
    assert "galtea_otel.store.postgres" in modules
    assert _under(modules, "galtea_otel.sync") == []


@pytest.mark.parametrize("module", ["galtea_otel.config", "galtea_otel.store.base", "galtea_otel.pipeline"])
def test_config_and_store_interface_import_no_sync_client(module: str) -> None:
    """The configuration imports no sync; the pipeline reaches only the outbox's statements (``sync.outbox``, a
    leaf over the store), never the HTTP client or the worker."""
    modules = _modules_after(f"import {module}")
    allowed = {"galtea_otel.sync", "galtea_otel.sync.outbox", "galtea_otel.sync.schema"}
    found = set(_under(modules, "galtea_otel.sync"))
    assert found <= (allowed if module == "galtea_otel.pipeline" else set())


def test_the_sync_client_does_not_import_the_configuration() -> None:
    modules = _modules_after("import galtea_otel.sync.client")
    assert "galtea_otel.sync.client" in modules
    assert "galtea_otel.config" not in modules
