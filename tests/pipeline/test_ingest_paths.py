"""The ingest path's shortcuts give the stored rows the general path gives.

- A batch of only new spans is not read back from the store (``Pipeline._prefetch`` ``fresh``): the batch's rows
  stand for the stored ones, with the keys resolution gave them. A batch holding one replayed span takes the
  general path (everything read back). Both must leave the same spans (keys, roots, flags), turns and sessions.
- ``sessions.agg`` keeps the first input and the last output turn's order without their texts (the sessions row
  holds them); an ``agg`` written the earlier way, texts inside, goes on the same.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.spandata import SpanData
from galtea_otel.store.sqlite import SQLiteStore

from .spans import collect, conversation, sdk_tracer


@pytest.fixture(scope="module")
def corpus() -> list[SpanData]:
    with sdk_tracer({"service.version": "9.9"}) as (tracer, exporter):
        conversation(tracer, "keyed", "1.0", 4)
        conversation(tracer, "resolved", "2.0", 3, keyed_children=False)  # children keyed by resolution
        conversation(tracer, "failed-turn", "1.0", 3, failed_turn=1)
        return collect(exporter)


def _tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored row of spans, turns and sessions, but the write times (``received_ns``, ``updated_ns``)."""
    conn = sqlite3.connect(path)
    out = {}
    for table, skip in (("spans", "received_ns"), ("turns", ""), ("sessions", "updated_ns")):
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] != skip]
        out[table] = sorted(conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr)
    conn.close()
    return out


def _ingest(path: Path, batches: list[list[SpanData]]) -> None:
    store = SQLiteStore(f"sqlite:///{path}")
    pipeline = Pipeline(store)
    for batch in batches:
        pipeline.ingest(batch)
    store.close()


@pytest.mark.parametrize("batches", [1, 3, 7])
def test_a_batch_of_new_spans_stores_what_the_general_path_stores(
        tmp_path: Path, corpus: list[SpanData], batches: int) -> None:
    spans = list(corpus)
    random.Random(batches).shuffle(spans)
    size = -(-len(spans) // batches)
    chunks = [spans[i:i + size] for i in range(0, len(spans), size)]
    # Every batch new: the shortcut. The same batches, each with a span of the previous one replayed (and the
    # first after a batch of one of its own spans): the general path, every time.
    _ingest(tmp_path / "fresh.db", chunks)
    replayed = [[chunks[0][0]], *([*chunk, (chunks[i - 1] if i else chunk)[0]] for i, chunk in enumerate(chunks))]
    _ingest(tmp_path / "general.db", replayed)
    fresh, general = _tables(tmp_path / "fresh.db"), _tables(tmp_path / "general.db")
    assert fresh["spans"] and fresh["turns"] and fresh["sessions"]
    assert fresh == general
    # the children of "resolved" got their key by resolution, in the store (the shortcut updated the batch's rows)
    conn = sqlite3.connect(tmp_path / "fresh.db")
    assert conn.execute("SELECT count(*) FROM spans WHERE custom_id = 'resolved' AND own_custom_id IS NULL"
                        ).fetchone()[0] > 0
    assert conn.execute("SELECT count(*) FROM spans WHERE custom_id IS NULL").fetchone()[0] == 0
    conn.close()


def test_agg_keeps_no_texts_and_an_earlier_agg_with_texts_goes_on_the_same(
        tmp_path: Path, corpus: list[SpanData]) -> None:
    first = [s for s in corpus if s.name != "galtea.session"]  # the sessions stay open: the second batch ends them
    second = [s for s in corpus if s.name == "galtea.session"]
    _ingest(tmp_path / "ref.db", [first, second])

    _ingest(tmp_path / "old.db", [first])
    conn = sqlite3.connect(tmp_path / "old.db")
    rows = conn.execute("SELECT custom_id, version, project, agg, first_input, last_output FROM sessions").fetchall()
    assert rows
    for custom_id, version, project, text, first_input, last_output in rows:
        agg = json.loads(text)
        assert agg["f"][1] is None and agg["l"][1] is None  # the texts are the sessions row's, not repeated
        assert first_input and last_output
        agg["f"][1], agg["l"][1] = first_input, last_output  # as an earlier release wrote it
        conn.execute("UPDATE sessions SET agg = ? WHERE custom_id = ? AND version = ? AND project = ?",
                     (json.dumps(agg, sort_keys=True), custom_id, version, project))
    conn.commit()
    conn.close()
    _ingest(tmp_path / "old.db", [second])
    assert _tables(tmp_path / "old.db") == _tables(tmp_path / "ref.db")


def test_the_agg_kept_in_memory_gives_what_the_stored_text_gives(tmp_path: Path, corpus: list[SpanData]) -> None:
    """One pipeline for every batch (each session's agg taken as it wrote it) and a new pipeline per batch (each
    agg parsed from the store) store the same rows."""
    spans = list(corpus)
    random.Random(5).shuffle(spans)
    chunks = [spans[i:i + 4] for i in range(0, len(spans), 4)]
    _ingest(tmp_path / "kept.db", chunks)
    for chunk in chunks:
        _ingest(tmp_path / "parsed.db", [chunk])
    assert _tables(tmp_path / "kept.db") == _tables(tmp_path / "parsed.db")


@pytest.mark.parametrize("late_session_span", [False, True])
def test_spans_are_inserted_placed_where_their_batch_tells(
        tmp_path: Path, corpus: list[SpanData], late_session_span: bool) -> None:
    """A fully keyed span is inserted with the root its batch tells (``_placed_at_insert``): the top of its chain
    of parents in the batch, or itself under a parent not in the batch. Where that holds (turns under their open
    session span) no row is written twice; where it does not (a parent keyed by resolution), the row is updated
    after, as before; either way the stored rows are the ones the general path gives (span by span, each batch
    read back)."""
    keyed = [s for s in corpus if s.attributes.get("galtea.session.custom_id") == "keyed"]
    rest = [s for s in corpus if s not in keyed]
    batches = [keyed, rest]
    if late_session_span:  # the turns before their session span (its export waits for it to end)
        batches = [[s for s in keyed if s.name != "galtea.session"], [s for s in keyed if s.name == "galtea.session"],
                   rest]
    store = SQLiteStore(f"sqlite:///{tmp_path / 'placed.db'}")
    pipeline = Pipeline(store)
    conn = store._connect()
    updates: list[int] = []
    for batch in batches:
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        pipeline.ingest(batch)
        conn.set_trace_callback(None)
        updates.append(sum(s.startswith("UPDATE spans SET root_id") for s in statements))
    store.close()
    # the keyed conversation's 12 turn spans (3 a turn) placed at insert, with or without their session span
    assert sum(1 for s in keyed if s.name in ("chat", "search", "openai.chat")) == 12
    assert updates[0] == 0
    # the children keyed by resolution: placed after their insert (9: 3 turns of 3 spans), each updated once
    unkeyed = sum(1 for s in rest if "galtea.session.custom_id" not in s.attributes)
    assert unkeyed == 9 and updates[-1] == unkeyed  # (the failed-turn conversation's, keyed: at insert)
    _ingest(tmp_path / "general.db", [[s] for s in corpus])
    assert _tables(tmp_path / "placed.db") == _tables(tmp_path / "general.db")


def test_a_span_whose_translation_raises_is_rejected_alone(tmp_path: Path, corpus: list[SpanData]) -> None:
    """A redactor (the user's code) that raises on one value: that span is rejected, counted, with its error; the
    rest of the batch is stored (the batch failing would lose them all, retry after retry)."""
    def redact(text: str) -> str:
        if "question 1" in text:
            raise ValueError("this redactor cannot read it")
        return text

    store = SQLiteStore(f"sqlite:///{tmp_path / 'redact.db'}")
    try:
        result = Pipeline(store, redact=redact).ingest(corpus)
        broken = [s for s in corpus if any("question 1" in str(v) for v in s.attributes.values())]
        assert len(broken) == 3  # the "chat" span of turn 1 of each conversation
        assert result.rejected == len(broken) and result.accepted == len(corpus) - len(broken)
        assert result.errors and all("could not be translated: ValueError: this redactor" in e for e in result.errors)
        conn = sqlite3.connect(tmp_path / "redact.db")
        stored = {r[0] for r in conn.execute("SELECT span_id FROM spans")}
        conn.close()
        assert stored == {s.span_id for s in corpus} - {s.span_id for s in broken}
    finally:
        store.close()
