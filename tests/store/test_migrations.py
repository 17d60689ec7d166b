"""Stores of earlier schemas open and migrate in place, the same on SQLite and PostgreSQL: the migration steps
are written once (``galtea_otel.store.schema.migrate``), so each case runs against both stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from galtea_otel.store import Store, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from galtea_otel.store.rows import ADDED_COLUMNS, ADDED_INDEXES
from galtea_otel.store.schema import OUTBOX_ADDED_COLUMNS
from galtea_otel.store.turns import PARTIAL_INDEXES
from tests.store.test_stores import _sql, upgrade_case


def _reopen(store: Store) -> Store:
    url = store.url if store.url.startswith("sqlite") else store._conninfo  # type: ignore[attr-defined]
    store.close()
    return open_store(url)


def _raw(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return store.read_sql(sql)


def _columns(store: Store, table: str) -> set[str]:
    return {r[0] for r in store.read_sql(store.dialect.columns_sql, (table,))}


def test_a_schema_v4_store_is_migrated_in_place(make_store: Callable[[], Store]) -> None:
    """A store written before schema v5 (no content-model, user or listing columns, no turns, no sync
    fingerprint) opens, gains the columns and indexes and keeps its rows."""
    store = make_store()
    _sql(store, [
        *(f"DROP INDEX {name}" for name, _, _ in ADDED_INDEXES),  # indexes on the added columns go first
        *(f"DROP INDEX {s.split()[5]}" for s in PARTIAL_INDEXES),
        "DROP TABLE turns",
        *(f"ALTER TABLE {t} DROP COLUMN {c}" for t, c, _ in (*ADDED_COLUMNS, *OUTBOX_ADDED_COLUMNS)
          if t != "turns"),  # (the turns table went whole)
        "UPDATE galtea_meta SET value = '4' WHERE key = 'schema_version'",
        "INSERT INTO sessions (custom_id, version, status, metadata, last_activity_ns, turn_count, assembly,"
        " updated_ns) VALUES ('old', '1', 'COMPLETED', '{}', 1, 0, '{}', 1)",
    ])
    assert "user_id" not in _columns(store, "spans")
    migrated = _reopen(store)
    try:
        assert [s.custom_id for s in migrated.list_sessions()] == ["old"]
        assert migrated.list_sessions()[0].user_id is None
        assert _raw(migrated, "SELECT value FROM galtea_meta WHERE key = 'schema_version'") == [
            (str(SCHEMA_VERSION),)]
        for table, column, _ in (*ADDED_COLUMNS, *OUTBOX_ADDED_COLUMNS):
            assert column in _columns(migrated, table), (table, column)
        assert _columns(migrated, "turns")
    finally:
        migrated.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ends_as(migrated: Store, reference: Store) -> None:
    """The migrated store, given ``upgrade_case``'s 4th turn, holds the reference's session and turns."""
    from galtea_otel.pipeline import read_session

    got, want = read_session(migrated, ("old", "1")), read_session(reference, ("old", "1"))
    assert got is not None and want is not None and got.turn_count == 4
    assert got.model_dump() == want.model_dump()
    assert migrated.read_turns(("old", "1")) == reference.read_turns(("old", "1"))


def test_a_schema_v9_store_keeps_reading_the_fields_in_its_turns_json(make_store: Callable[[], Store]) -> None:
    """Schema v10: the fields of a turn that its columns hold (ids, times, model, failure, contributions) are
    left out of its JSON. A v9 store (turns with them in ``data`` as well) opens; its turns read as before, the
    turns written after leave them out, and the session's record is that of a store that had v10 from the
    start."""
    import json

    from galtea_otel.pipeline import Pipeline, read_session
    from galtea_otel.store.turns import COLUMN_FIELDS

    reference, store, later = upgrade_case(make_store)
    before, turns_before = read_session(store, ("old", "1")), store.read_turns(("old", "1"))
    assert len(turns_before) == 3 and all(isinstance(t["failed"], bool) and t["latency_ns"] > 0 and t["model"]
                                          for t in turns_before)
    columns = ", ".join(COLUMN_FIELDS)
    rows = _raw(store, f"SELECT data, {columns} FROM turns")
    assert rows and all(set(COLUMN_FIELDS).isdisjoint(json.loads(r[0])) for r in rows)  # v10's layout
    v9 = []  # each turn as v9 wrote it: the column fields inside its JSON too, in the record's order
    for data, *values in rows:
        fields = dict(zip(COLUMN_FIELDS, values, strict=True))
        record = {**fields, "failed": bool(fields["failed"]), **json.loads(data)}
        v9.append(f"UPDATE turns SET data = {_literal(json.dumps(record))} WHERE trace_id = "
                  f"{_literal(fields['trace_id'])} AND span_id = {_literal(fields['span_id'])}")
    _sql(store, [*v9, "UPDATE galtea_meta SET value = '9' WHERE key = 'schema_version'"])
    migrated = _reopen(store)
    try:
        assert _raw(migrated, "SELECT value FROM galtea_meta WHERE key = 'schema_version'") == [
            (str(SCHEMA_VERSION),)]
        assert migrated.read_turns(("old", "1")) == turns_before
        assert read_session(migrated, ("old", "1")) == before
        Pipeline(migrated).ingest(later)
        kept = [json.loads(r[0]) for r in _raw(migrated, "SELECT data FROM turns")]
        assert sum("trace_id" in d for d in kept) == 3 and len(kept) == 4  # the new turn: v10's layout
        _ends_as(migrated, reference)
    finally:
        migrated.close()
        reference.close()


def test_a_schema_v8_store_keeps_reading_the_texts_in_its_turns_json(make_store: Callable[[], Store]) -> None:
    """Schema v9: a turn's input and output have columns of their own, out of its JSON. A v8 store (turns with
    their texts in ``data``, no text columns) opens and gains the columns; its turns read as before, and the
    turns written after keep their texts in the columns; the session's record is that of a store that had v9
    from the start."""
    import json

    from galtea_otel.pipeline import Pipeline, read_session

    reference, store, later = upgrade_case(make_store)
    before, turns_before = read_session(store, ("old", "1")), store.read_turns(("old", "1"))
    assert len(turns_before) == 3 and all(t["input"] and t["output"] for t in turns_before)
    rows = _raw(store, "SELECT trace_id, span_id, data, input, output FROM turns")
    assert rows and all("input" not in json.loads(r[2]) and r[3] is not None for r in rows)  # v9's layout
    v8 = []  # each turn as v8 wrote it: the texts inside its JSON
    for trace_id, span_id, data, text_in, text_out in rows:
        record = {**json.loads(data), "input": text_in, "output": text_out}
        v8.append(f"UPDATE turns SET data = {_literal(json.dumps(record))} WHERE trace_id = {_literal(trace_id)}"
                  f" AND span_id = {_literal(span_id)}")
    _sql(store, [*v8, "ALTER TABLE turns DROP COLUMN input", "ALTER TABLE turns DROP COLUMN output",
                 "UPDATE galtea_meta SET value = '8' WHERE key = 'schema_version'"])
    assert "input" not in _columns(store, "turns")
    migrated = _reopen(store)
    try:
        assert {"input", "output"} <= _columns(migrated, "turns")
        assert _raw(migrated, "SELECT count(*) FROM turns WHERE input IS NULL") == [(3,)]
        assert migrated.read_turns(("old", "1")) == turns_before
        assert read_session(migrated, ("old", "1")) == before
        Pipeline(migrated).ingest(later)
        assert _raw(migrated, "SELECT count(*) FROM turns WHERE input IS NOT NULL") == [(1,)]  # the new turn
        _ends_as(migrated, reference)
    finally:
        migrated.close()
        reference.close()
