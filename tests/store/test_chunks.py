"""Statements over many rows or values are written for chunks whose lengths are powers of two
(``store.base.iter_chunks``), so batches of any size reuse a few statement texts, each prepared once."""

from __future__ import annotations

import random
from pathlib import Path

from galtea_otel.pipeline import Pipeline
from galtea_otel.store.base import iter_chunks
from galtea_otel.store.sqlite import SQLiteStore
from tests.pipeline.spans import collect, conversation, sdk_tracer


def test_chunks_cover_the_items_in_order_in_powers_of_two() -> None:
    for size in (1, 3, 200, 256, 500):
        most = 1 << (size.bit_length() - 1)
        for count in (*range(0, 70), 255, 256, 257, 511, 1000, 1023, 4097):
            items = list(range(count))
            chunks = [list(c) for c in iter_chunks(items, size)]
            assert [x for c in chunks for x in c] == items
            assert all(0 < len(c) <= most and len(c) & (len(c) - 1) == 0 for c in chunks), (size, count)
            assert len(chunks) <= count // most + most.bit_length()  # full chunks, then one of each smaller size


def test_batches_of_any_size_reuse_a_few_statement_texts(tmp_path: Path) -> None:
    from galtea_otel.store import sqlite as sqlite_store

    with sdk_tracer() as (tracer, exporter):
        for s in range(60):
            conversation(tracer, f"c{s}", "1", 1 + s % 7)
        spans = collect(exporter)
    random.Random(7).shuffle(spans)
    store = SQLiteStore(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store)
    sqlite_store._MULTI.clear()  # the multi-row texts written, by (statement, rows)
    start, sizes = 0, []
    while start < len(spans):
        size = 2 + (len(sizes) * 37) % 300  # a new size every batch
        pipeline.ingest(spans[start:start + size])
        sizes.append(size)
        start += size
    assert len(set(sizes)) >= 8
    for table in ("spans", "turns"):
        rows = {n for sql, n in sqlite_store._MULTI if sql.split(" (")[0].endswith(f"INTO {table}")}
        assert rows, table
        assert all(n & (n - 1) == 0 for n in rows) and len(rows) <= (256).bit_length(), (table, sorted(rows))
    assert sum(r.turn_count for r in store.list_sessions(limit=100)) == sum(1 + s % 7 for s in range(60))
    store.close()
