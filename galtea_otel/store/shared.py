"""What the SQLite and PostgreSQL stores do the same way, written once with ``?`` marks: test cases and counters
over a store's plain-SQL handle (``SqlStore``: ``write_sql`` / ``read_sql``), the sweep's and the counters'
primitives of a transaction over its ``_q`` / ``_x`` (as ``store.turns.TurnsTx``), the upserts of the write path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from galtea_otel.store.dialect import Dialect, Sql
from galtea_otel.store.rows import SESSION_COLUMNS, row_from_tuple
from galtea_otel.translate.row import COLUMNS, SpanRow

if TYPE_CHECKING:  # the records (pydantic) are imported where one is made, not to open a store
    from galtea_otel.records import TestCase

TEST_CASE_COLUMNS = "id, input, expected_output, context, metadata"
PUT_TEST_CASE = (
    f"INSERT INTO test_cases ({TEST_CASE_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET input = excluded.input, expected_output = excluded.expected_output,"
    " context = excluded.context, metadata = excluded.metadata"
)
GET_TEST_CASE = f"SELECT {TEST_CASE_COLUMNS} FROM test_cases WHERE id = ?"
LIST_TEST_CASES = f"SELECT {TEST_CASE_COLUMNS} FROM test_cases ORDER BY id"
TEST_CASE_CONTEXT = "SELECT context FROM test_cases WHERE id = ?"
COUNTERS = "SELECT name, value FROM counters ORDER BY name"
ADD_COUNTER = ("INSERT INTO counters (name, value) VALUES (?, ?)"
               " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value")
SELECT_SPANS = f"SELECT {', '.join(COLUMNS)} FROM spans"
UPSERT_SESSION = (
    f"INSERT INTO sessions ({', '.join(SESSION_COLUMNS)}, updated_ns)"
    f" VALUES ({', '.join('?' * len(SESSION_COLUMNS))}, ?)"
    " ON CONFLICT (custom_id, version, project) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*SESSION_COLUMNS[2:], "updated_ns") if c != "project")
)


class SharedStore:
    """The part of ``Store`` both stores implement the same (a mixin: the store gives the SQL handle)."""

    dialect: Dialect

    def write_sql(self) -> AbstractContextManager[Sql]:
        raise NotImplementedError

    def read_sql(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.read_sql(COUNTERS)}

    def put_test_cases(self, cases: Iterable[TestCase]) -> int:
        rows = [(c.id, c.input, c.expected_output, c.context, json.dumps(c.metadata, sort_keys=True))
                for c in cases]
        if rows:
            with self.write_sql() as sql:
                sql.executemany(PUT_TEST_CASE, rows)
        return len(rows)

    def get_test_case(self, test_case_id: str) -> TestCase | None:
        rows = self.read_sql(GET_TEST_CASE, (test_case_id,))
        return to_test_case(rows[0]) if rows else None

    def list_test_cases(self) -> list[TestCase]:
        return [to_test_case(r) for r in self.read_sql(LIST_TEST_CASES)]


class SharedTx:
    """The part of ``StoreTx`` both stores implement the same (a mixin beside ``TurnsTx``: the transaction gives
    ``_q`` / ``_x`` and ``sql``)."""

    sql: Sql

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _x(self, sql: str, args: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def test_case_context(self, test_case_id: str) -> str | None:
        rows = self._q(TEST_CASE_CONTEXT, (test_case_id,))
        return rows[0][0] if rows else None

    def delete_session(self, key: tuple[str, str, str]) -> None:
        self._x("DELETE FROM sessions WHERE custom_id = ? AND version = ? AND project = ?", key)

    def idle_sessions(self, last_activity_before_ns: int) -> list[tuple[str, str, str]]:
        return [(r[0], r[1], r[2]) for r in self._q(
            "SELECT custom_id, version, project FROM sessions WHERE status = 'PENDING' AND last_activity_ns < ?"
            " ORDER BY custom_id, version, project", (last_activity_before_ns,))]

    def sweep_marks(self) -> tuple[int | None, int | None]:
        row = self._q("SELECT (SELECT min(last_activity_ns) FROM sessions WHERE status = 'PENDING'),"
                      " (SELECT min(newest) FROM (SELECT max(received_ns) AS newest FROM spans"
                      " WHERE custom_id IS NULL GROUP BY project, trace_id) AS held)")
        return (None if row[0][0] is None else int(row[0][0]), None if row[0][1] is None else int(row[0][1]))

    def held_traces(self, received_before_ns: int) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._q(
            "SELECT project, trace_id FROM spans WHERE custom_id IS NULL GROUP BY project, trace_id"
            " HAVING max(received_ns) < ? ORDER BY trace_id, project", (received_before_ns,))]

    def unkeyed_rows(self, trace_id: str, project: str) -> list[SpanRow]:
        return [row_from_tuple(r) for r in self._q(
            SELECT_SPANS + " WHERE trace_id = ? AND project = ? AND custom_id IS NULL", (trace_id, project))]

    def delete_unkeyed(self, trace_id: str, project: str) -> int:
        return self.sql.execute("DELETE FROM spans WHERE trace_id = ? AND project = ? AND custom_id IS NULL",
                                (trace_id, project))

    def add_counter(self, name: str, amount: int) -> None:
        self._x(ADD_COUNTER, (name, amount))


def to_test_case(row: Sequence[Any]) -> TestCase:
    from galtea_otel.records import TestCase

    return TestCase(id=row[0], input=row[1], expected_output=row[2], context=row[3],
                    metadata=json.loads(row[4] or "{}"))

