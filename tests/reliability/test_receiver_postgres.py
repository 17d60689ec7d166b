"""RELIABILITY 4 (quick size, about 3 s): two receiver processes, one PostgreSQL store, a round-robin client.
The full size, 1,000 sessions x 20 spans (about 15 s), is tests/slow/test_receiver_postgres.py."""

from __future__ import annotations

from .two_receivers import check_two_receivers


def test_two_receiver_processes_on_postgres_store_every_span_once(pg_schema: tuple[str, str]) -> None:
    """RELIABILITY 4 (100 x 20): 2 `galtea-otel serve` processes on one PostgreSQL schema, 100 sessions x 20
    spans split at random between them by a round-robin client (8 threads, the real OTLP/HTTP exporter):
    exactly 100 sessions (each with its 8 turns), 2,000 spans, no 5xx."""
    url, schema = pg_schema
    check_two_receivers(url, schema, sessions=100)
