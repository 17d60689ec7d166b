"""The store fixtures of ``test_stores`` (a fresh store of each kind, fresh PostgreSQL schemas), for every module
of this folder."""

from tests.store.test_stores import make_store, pg_schemas  # noqa: F401
