"""The receiver's inbox (``serve --assemble deferred``, :mod:`galtea_otel.serve.inbox`) as readers see it: where
it is, and how many spans in it wait to be assembled. Read-only and light: the CLI and the UI use it without
importing the pipeline, and never create an inbox."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def inbox_file(store: Any) -> Path | None:
    """``<store file>.inbox`` for a SQLite store file; None for any other store (no inbox)."""
    path = getattr(store, "path", None)
    dialect = getattr(getattr(store, "dialect", None), "name", "")
    if not isinstance(path, Path) or dialect != "sqlite" or str(path) == ":memory:":
        return None
    return path.with_name(path.name + ".inbox")


def waiting_spans(store: Any) -> int:
    """Spans the inbox holds that are not assembled yet (not counting those marked failed); 0 without an inbox
    or when it cannot be read."""
    path = inbox_file(store)
    if path is None or not path.exists():
        return 0
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT coalesce(sum(spans), 0) FROM inbox WHERE failed IS NULL").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
    return int(row[0])
