"""What differs between SQLite and PostgreSQL, and the plain-SQL handle both stores give.

Everything the two stores share (table definitions and migrations: ``store.schema``; test cases and counters:
``store.shared``; the Galtea outbox: ``galtea_otel.sync.outbox``; stored turns: ``store.turns``) is written
once, as SQL with ``?`` marks over these column types, and run through a :class:`Sql` handle; a :class:`Dialect`
holds the rest:

- the column types (an identifier is ``TEXT COLLATE "C"`` in PostgreSQL, so that both order the same);
- the placeholder (``?`` / ``%s``) and the values (PostgreSQL text cannot hold NUL: made U+FFFD);
- ``lock_rows``: how a claim keeps concurrent claimers off the rows it took (``FOR UPDATE SKIP LOCKED``;
  SQLite has one writer at a time, ``BEGIN IMMEDIATE``, and needs nothing);
- ``nulls_last`` (SQLite's DESC already puts NULL last);
- ``columns_sql``: the columns of a table (migrations add the missing ones).

Upserts are the same in both (``INSERT ... ON CONFLICT (...) DO UPDATE SET c = excluded.c``, the table's own
columns qualified by its name). This module imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" / "postgresql"
    ident: str  # identifiers (keys, ids): compared byte-wise in both
    bigint: str
    real: str
    boolean: str
    placeholder: str
    lock_rows: str
    nulls_last: str
    columns_sql: str  # one ``?``: the table; rows whose first value is a column name

    def sql(self, statement: str) -> str:
        """A statement written with ``?`` marks, with this dialect's."""
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def type(self, kind: str) -> str:
        """The column type of a logical type (``text`` / ``int`` / ``float`` / ``bool`` / ``ident``)."""
        return {"text": "TEXT", "int": self.bigint, "float": self.real, "bool": self.boolean,
                "ident": self.ident}[kind]


SQLITE = Dialect(
    name="sqlite", ident="TEXT", bigint="INTEGER", real="REAL", boolean="INTEGER", placeholder="?", lock_rows="",
    nulls_last="", columns_sql="SELECT name FROM pragma_table_info(?)",
)
POSTGRES = Dialect(
    name="postgresql", ident='TEXT COLLATE "C"', bigint="BIGINT", real="DOUBLE PRECISION", boolean="BOOLEAN",
    placeholder="%s", lock_rows=" FOR UPDATE SKIP LOCKED", nulls_last=" NULLS LAST",
    columns_sql="SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = ?",
)


class Sql(Protocol):
    """Statements with ``?`` marks inside one transaction (the store's own, or one the caller's ``with`` holds).

    ``execute`` returns how many rows the statement changed; ``executemany`` runs it once per row of values and
    returns nothing (PostgreSQL sends them together)."""

    dialect: Dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
