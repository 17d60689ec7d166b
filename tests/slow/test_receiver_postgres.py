"""RELIABILITY 4 at full size: two receiver processes, one PostgreSQL store, a round-robin client (about 15 s).
The same check at 100 x 20 runs with the quick tests (tests/reliability/test_receiver_postgres.py); this one runs with
the fuzzing budgets (``-m fuzz``)."""

from __future__ import annotations

import pytest

from ..reliability.conftest import fresh_pg_schema
from ..reliability.two_receivers import check_two_receivers


@pytest.mark.fuzz  # a stress budget: runs with -m fuzz (.ci/run does); the 100 x 20 variant runs by default
def test_two_receiver_processes_on_postgres_1000_sessions_x_20_spans() -> None:
    """RELIABILITY 4: 2 `galtea-otel serve` processes on one PostgreSQL schema, 1,000 sessions x 20 spans split
    at random between them by a round-robin client (8 threads, the real OTLP/HTTP exporter): exactly 1,000
    sessions (each with its 8 turns), 20,000 spans, no 5xx."""
    with fresh_pg_schema() as (url, schema):
        check_two_receivers(url, schema, sessions=1000, seed=1000)
