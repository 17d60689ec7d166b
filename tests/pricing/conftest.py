"""The conformance fixtures (a real receiver on 127.0.0.1 with a tmp SQLite store) for the instrumented tests."""

from tests.conformance.conftest import pipeline, receiver, store  # noqa: F401
