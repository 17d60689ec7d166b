"""What the SQLite and PostgreSQL stores do the same way, written once over their plain-SQL handle
(``SqlStore``: ``write_sql`` / ``read_sql``) and ``?`` marks: test cases, counters, the upserts of the write path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from galtea_otel.store.dialect import Dialect, Sql
from galtea_otel.store.rows import SESSION_COLUMNS

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


def to_test_case(row: Sequence[Any]) -> TestCase:
    from galtea_otel.records import TestCase

    return TestCase(id=row[0], input=row[1], expected_output=row[2], context=row[3],
                    metadata=json.loads(row[4] or "{}"))

