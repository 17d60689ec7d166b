"""The SQLite store registers adapters for ``None`` and ``bool`` (``galtea_otel.store.sqlite``: CPython 3.11's
sqlite3 binds both on a slow path otherwise). They must bind exactly what sqlite3 binds without them, in the
store and in the application's own connections, and leave an adapter the application registered alone."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import galtea_otel.store.sqlite  # noqa: F401  (registers the adapters)
from tests.pipeline.spans import collect, conversation, sdk_tracer
from tests.pipeline.test_ingest_paths import _ingest, _tables

_KINDS = (type(None), bool)


def test_the_adapters_are_registered_and_bind_null_and_integers() -> None:
    for kind in _KINDS:
        assert (kind, sqlite3.PrepareProtocol) in sqlite3.adapters
    conn = sqlite3.connect(":memory:")
    row = conn.execute("SELECT ?, typeof(?), ?, typeof(?), ?, typeof(?)",
                       (None, None, True, True, False, False)).fetchone()
    conn.close()
    assert row == (None, "null", 1, "integer", 0, "integer")


def test_a_store_holds_the_same_rows_with_and_without_the_adapters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "kept", "1.0", 3)
        conversation(tracer, "failed", "1.0", 2, failed_turn=1)
        spans = collect(exporter)
    _ingest(tmp_path / "adapted.db", [spans])
    for kind in _KINDS:
        monkeypatch.delitem(sqlite3.adapters, (kind, sqlite3.PrepareProtocol))
    _ingest(tmp_path / "plain.db", [spans])
    adapted, plain = _tables(tmp_path / "adapted.db"), _tables(tmp_path / "plain.db")
    assert adapted["spans"] and adapted["turns"] and adapted["sessions"]
    assert any(None in row for row in adapted["spans"])  # NULL columns were bound: the adapters ran
    assert adapted == plain


def test_an_adapter_the_application_registered_first_is_kept() -> None:
    code = (
        "import sqlite3\n"
        "sqlite3.register_adapter(bool, lambda b: 'yes' if b else 'no')\n"
        "import galtea_otel.store.sqlite\n"
        "conn = sqlite3.connect(':memory:')\n"
        "print(conn.execute('SELECT ?, ?', (True, None)).fetchone())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "('yes', None)"
