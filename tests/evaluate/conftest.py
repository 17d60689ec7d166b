"""Both stores (tests/store's factory) and the conformance receiver, for the evaluation tests."""

from tests.conformance.conftest import pipeline, receiver, store  # noqa: F401
from tests.store.test_stores import make_store, pg_schemas  # noqa: F401
