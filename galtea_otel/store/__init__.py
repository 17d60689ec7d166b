"""Stores: where records live. ``open_store(url)`` picks one by URL scheme."""

from __future__ import annotations

import os

from galtea_otel.store.base import Store, StoreError, StoreTx

DEFAULT_STORE_URL = "sqlite:///galtea_sessions.db"
SCHEMES = ("sqlite", "postgresql", "postgres")


def default_store_url() -> str:
    """``GALTEA_OTEL_STORE`` when set, else the SQLite file ``./galtea_sessions.db``."""
    return os.environ.get("GALTEA_OTEL_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None, *, checkpoint: str = "inline") -> Store:
    """Open (and create or migrate) the store named by ``url``.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a bare file path: the embedded store;
    ``postgresql://user@host:5432/db``: PostgreSQL (``pip install galtea-otel[postgres]``). ``checkpoint``
    (SQLite only; the URL's ``?checkpoint=`` wins): ``"background"`` copies the WAL into the database file on a
    thread of its own instead of in a commit (:mod:`galtea_otel.store.checkpoint`), for a busy writer.
    """
    url = url or default_store_url()
    scheme, sep, _ = url.partition("://")
    if not sep or scheme == "sqlite":
        from galtea_otel.store.sqlite import SQLiteStore

        return SQLiteStore(url, checkpoint=checkpoint)
    if scheme in ("postgresql", "postgres"):
        try:
            from galtea_otel.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                f"the PostgreSQL store needs psycopg: pip install 'galtea-otel[postgres]' ({exc})") from exc
        return PostgresStore(url)
    raise StoreError(f"unknown store URL scheme {scheme!r} in {url!r}: use one of "
                     f"{', '.join(s + '://' for s in SCHEMES)}")


__all__ = ["DEFAULT_STORE_URL", "Store", "StoreError", "StoreTx", "default_store_url", "open_store"]
