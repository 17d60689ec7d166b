"""Schema v6: stored turns, the tables and statements both stores share (SQL with ``?`` marks; PostgreSQL
swaps them for ``%s``).

Incremental assembly (``galtea_otel.pipeline``) keeps one ``turns`` row per turn, recomputed for the traces a
batch touches, and the session's exact aggregates in ``sessions.agg``; a reader takes the turns as stored
instead of reassembling the session. Session keys are written as ``KEY`` (the key's columns, in order) and
passed whole (``*key``), never unpacked by name.
"""

from __future__ import annotations

import json
from collections.abc import Container, Sequence
from typing import Any

from galtea_otel.store.base import iter_chunks
from galtea_otel.translate.messages import json_encoder

# (custom_id, version, project): as ``store.base.Key``, the project last.
KEY_COLUMNS: tuple[str, ...] = ("custom_id", "version", "project")
KEY = ", ".join(KEY_COLUMNS)
KEY_EQ = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
ORDER = "start_ns, end_ns, trace_id, span_id"
# The columns a turn's aggregates come from (the session's sums are kept exact by subtracting and adding them).
CONTRIB_COLUMNS = ("input_tokens", "output_tokens", "total_tokens", "cache_read_tokens", "cost", "latency_ns")
# v9: a turn's input and output texts have columns of their own (``TEXT_COLUMNS``, added by
# ``store.rows.ADDED_COLUMNS``), out of ``data``: bound as they are instead of escaped into JSON, which cost the
# exporter about 7% of its instructions (BENCHMARKS.md, stop 18). A turn written before keeps them in ``data``
# (its text columns are NULL); a reader takes them from wherever they are (``records_of``).
TEXT_COLUMNS = ("input", "output")
# v10: the fields of a turn that its columns hold already (ids, times, model, failure, contributions) are left out
# of ``data``: a reader takes them from the columns (``records_of``). Each is in every turn record
# (``assemble.assembler.turn_record``); ``root_id``, which the pipeline may leave out, stays in ``data``. That is
# about 340 bytes a turn not written twice, and not JSON-encoded and decoded (BENCHMARKS.md, stop 19). A turn
# written before v10 keeps them in ``data`` too, where a reader finds them first.
COLUMN_FIELDS = ("trace_id", "span_id", "start_ns", "end_ns", "model", "failed", *CONTRIB_COLUMNS)
TURN_COLUMNS = (*KEY_COLUMNS, "trace_id", "span_id", "root_id", "start_ns", "end_ns", "model", "failed",
                *CONTRIB_COLUMNS, "data", *TEXT_COLUMNS)


def ddl(ident: str, bigint: str, real: str) -> str:
    """The turns table and its indexes."""
    keys = ", ".join(f"{c} {ident} NOT NULL" for c in KEY_COLUMNS)
    return f"""
CREATE TABLE IF NOT EXISTS turns (
    {keys}, trace_id {ident} NOT NULL, span_id {ident} NOT NULL,
    root_id {ident}, start_ns {bigint} NOT NULL, end_ns {bigint} NOT NULL, model TEXT, failed INTEGER NOT NULL,
    input_tokens {bigint}, output_tokens {bigint}, total_tokens {bigint}, cache_read_tokens {bigint}, cost {real},
    latency_ns {bigint} NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY ({KEY}, trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS turns_by_root ON turns ({KEY}, trace_id, root_id);
CREATE INDEX IF NOT EXISTS turns_in_order ON turns ({KEY}, {ORDER});
CREATE INDEX IF NOT EXISTS turns_with_model ON turns ({KEY}, {ORDER}) WHERE model IS NOT NULL;
CREATE INDEX IF NOT EXISTS turns_failed ON turns ({KEY}, {ORDER}) WHERE failed = 1;
"""


# Indexes on the spans columns v6 adds (``SPAN_COLUMNS``), created once the columns exist.
SPAN_INDEXES: tuple[tuple[str, str, str], ...] = (
    ("spans_children", "spans", "trace_id, parent_span_id"),
    ("spans_by_root", "spans", "trace_id, root_id"),
)
PARTIAL_INDEXES = (
    # a session's few start / end events among its spans (after the columns: ``project`` is v7's)
    f"CREATE INDEX IF NOT EXISTS spans_session_events ON spans ({KEY}, start_ns)"
    " WHERE kind IN ('SESSION', 'MARKER')",
    "CREATE INDEX IF NOT EXISTS spans_continuing ON spans (trace_id) WHERE flags = 1",
    "CREATE INDEX IF NOT EXISTS spans_agents ON spans (trace_id) WHERE kind IN ('AGENT', 'CHAIN')",
    "CREATE INDEX IF NOT EXISTS spans_weak ON spans (trace_id) WHERE key_weak IS TRUE",
)
# Traces holding a row that needs its trace to resolve its key, by the partial indexes (not a scan of the trace).
# (SQLite's planner, with no statistics, is told which index: ``{unresolved}`` / ``{weak}``.)
UNRESOLVED = ("SELECT trace_id FROM spans{unresolved} WHERE {cond} AND (own_custom_id IS NULL OR own_version IS NULL)"
              " UNION SELECT trace_id FROM spans{weak} WHERE {cond} AND key_weak IS TRUE")
# Store-managed span columns (not SpanRow fields): ``root_id``, the topmost ancestor of a span among its
# session's spans of its trace (the unit incremental assembly recomputes); ``flags`` 1: an LLM call whose input
# ends with a tool result (it may continue the previous turn of its trace).
EXTRA_COLUMNS = ("root_id", "flags")
FLAG_CONTINUES = 1


EVENTS = f" WHERE {KEY_EQ} AND kind IN ('SESSION', 'MARKER')"
STATE = f"SELECT agg, assembly FROM sessions WHERE {KEY_EQ}"
CONTRIBS = f"SELECT {', '.join(CONTRIB_COLUMNS)} FROM turns WHERE {KEY_EQ} AND trace_id = ?"
DELETE_TRACE = f"DELETE FROM turns WHERE {KEY_EQ} AND trace_id = ?"
SET_ROOT = "UPDATE spans SET root_id = ?, flags = ? WHERE trace_id = ? AND span_id = ?"
MERGE_ROOT = f"UPDATE spans SET root_id = ? WHERE trace_id = ? AND root_id = ? AND {KEY_EQ}"
DELETE_ALL = f"DELETE FROM turns WHERE {KEY_EQ}"
INSERT = f"INSERT INTO turns ({', '.join(TURN_COLUMNS)}) VALUES ({', '.join('?' * len(TURN_COLUMNS))})"
_DATA = ", ".join(("data", *TEXT_COLUMNS, *COLUMN_FIELDS))  # what ``records_of`` reads
FIRST = f"SELECT {_DATA} FROM turns WHERE {KEY_EQ} ORDER BY {ORDER} LIMIT 1"
LAST = f"SELECT {_DATA} FROM turns WHERE {KEY_EQ} ORDER BY " + ", ".join(
    f"{c} DESC" for c in ORDER.split(", ")) + " LIMIT 1"
FIRST_MODEL = f"SELECT model, {ORDER} FROM turns WHERE {KEY_EQ} AND model IS NOT NULL ORDER BY {ORDER} LIMIT 1"
FIRST_FAILED = f"SELECT {ORDER}, data FROM turns WHERE {KEY_EQ} AND failed = 1 ORDER BY {ORDER} LIMIT 1"
BEFORE = f"SELECT count(*) FROM turns WHERE {KEY_EQ} AND ({ORDER}) < (?, ?, ?, ?)"
READ = f"SELECT {_DATA} FROM turns WHERE {KEY_EQ} ORDER BY {ORDER}"


_PAIRS = 128  # pairs per statement at most: 4 parameters a pair (``continuing``) stays within SQLite's oldest 999


_LEFT_OUT = frozenset((*TEXT_COLUMNS, *COLUMN_FIELDS))
_TEXTS = len(TEXT_COLUMNS)
_DATA_JSON = json_encoder()  # json.dumps' text, without making its C encoder once a turn


def turn_values(key: Sequence[Any], record: dict[str, Any]) -> tuple[Any, ...]:
    """The ``TURN_COLUMNS`` of a turn record: ``data`` is the record without what the other columns hold."""
    data = {name: value for name, value in record.items() if name not in _LEFT_OUT}
    return (*key, record["trace_id"], record["span_id"], record.get("root_id"), record["start_ns"],
            record["end_ns"], record["model"], 1 if record["failed"] else 0,
            *(record[c] for c in CONTRIB_COLUMNS), _DATA_JSON(data), *(record[c] for c in TEXT_COLUMNS))


def records_of(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """The turn records of rows of ``data``, the ``TEXT_COLUMNS`` and the ``COLUMN_FIELDS`` (``_DATA``). A
    turn written before v9 has its texts in ``data`` only, one written before v10 its column fields too."""
    records = []
    for data, *columns in rows:
        record = json.loads(data)
        if TEXT_COLUMNS[0] not in record:
            record.update(zip(TEXT_COLUMNS, columns[:_TEXTS], strict=True))
        if COLUMN_FIELDS[0] not in record:
            record.update(zip(COLUMN_FIELDS, columns[_TEXTS:], strict=True))
            record["failed"] = bool(record["failed"])
        records.append(record)
    return records


class TurnsTx:
    """The v6 primitives of ``StoreTx`` written once for both stores; a store's transaction provides ``_q``
    (rows of a query), ``_x`` (a statement), ``_xmany`` and ``_in`` (a column-in-list condition, chunked)."""

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _x(self, sql: str, args: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def _xmany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _in(self, column: str, values: Sequence[Any]) -> list[tuple[str, list[Any]]]:
        raise NotImplementedError

    def _by_first_key_column(self, select: str, keys: Sequence[tuple[Any, ...]], extra: str = ""
                             ) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = []
        for condition, args in self._in(KEY_COLUMNS[0], sorted({k[0] for k in keys})):
            found.extend(self._q(f"{select} WHERE {condition}{extra}", args))
        return found

    def session_states(self, keys: Sequence[Any]) -> dict[Any, tuple[str | None, str, str | None, str | None]]:
        """(agg, assembly, first_input, last_output) of the stored sessions among these keys."""
        width = len(KEY_COLUMNS)
        wanted = set(keys)
        rows = self._by_first_key_column(
            f"SELECT {KEY}, agg, assembly, first_input, last_output FROM sessions", keys)
        return {tuple(r[:width]): (r[width], r[width + 1], r[width + 2], r[width + 3])
                for r in rows if tuple(r[:width]) in wanted}

    def session_events(self, keys: Sequence[Any], columns: Sequence[str]) -> dict[Any, list[tuple[Any, ...]]]:
        """The session spans and markers of these sessions, as column tuples (``columns`` include the key)."""
        index = [columns.index(c) for c in KEY_COLUMNS]
        found: dict[Any, list[tuple[Any, ...]]] = {k: [] for k in keys}
        for r in self._by_first_key_column(f"SELECT {', '.join(columns)} FROM spans", keys,
                                           " AND kind IN ('SESSION', 'MARKER')"):
            rows = found.get(tuple(r[i] for i in index))
            if rows is not None:
                rows.append(r)
        return found

    def pair_rows(self, pairs: Sequence[tuple[Any, str]], columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The span rows of these (session key, trace id) pairs: a session's part of a trace."""
        index = [columns.index(c) for c in KEY_COLUMNS]
        trace = columns.index("trace_id")
        wanted = set(pairs)
        found = []
        for condition, args in self._in("trace_id", sorted({t for _, t in pairs})):
            for r in self._q(f"SELECT {', '.join(columns)} FROM spans WHERE {condition}", args):
                if (tuple(r[i] for i in index), r[trace]) in wanted:
                    found.append(r)
        return found

    def trace_context(self, trace_id: str, span_ids: Sequence[str], parent_ids: Sequence[str],
                      columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Rows of one trace: those with these span ids or parent ids, and the children of ``span_ids``."""
        found: dict[str, tuple[Any, ...]] = {}
        span = columns.index("span_id")
        for column, values in (("span_id", sorted({*span_ids, *parent_ids})), ("parent_span_id", sorted(span_ids))):
            for condition, args in self._in(column, values):
                for r in self._q(f"SELECT {', '.join(columns)} FROM spans WHERE trace_id = ? AND {condition}",
                                 [trace_id, *args]):
                    found[r[span]] = r
        return list(found.values())

    def trace_contexts(self, requests: Sequence[tuple[str, Sequence[str], Sequence[str]]], columns: Sequence[str],
                       known: Container[tuple[str, str]] = ()) -> list[list[tuple[Any, ...]]]:
        """``trace_context`` of each (trace id, span ids, parent ids), for all of them in two statements: the
        children of the span ids, ids only, from the (trace_id, parent_span_id) index, then the rows of every
        span wanted (its own ids, their parents, those children) from the spans' primary key. The (trace id,
        span id) pairs in ``known`` (the caller has those rows) are not read, nor returned: children included, so
        a batch whose spans were just inserted does not read its own rows back."""
        span, parent = columns.index("span_id"), columns.index("parent_span_id")
        trace = columns.index("trace_id")
        children: set[tuple[str, str]] = set()
        for chunk in iter_chunks(sorted({(t, i) for t, ids, _ in requests for i in ids}), _PAIRS):
            sql = (f"WITH w (t, i) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))}) SELECT spans.trace_id,"
                   " spans.span_id FROM w JOIN spans ON spans.trace_id = w.t AND spans.parent_span_id = w.i")
            children.update((r[0], r[1]) for r in self._q(sql, [v for pair in chunk for v in pair]))
        wanted_pairs = {(t, i) for t, ids, parents in requests for i in (*ids, *parents)} | children
        select = ", ".join(f"spans.{c}" for c in columns)
        by_trace: dict[str, dict[str, tuple[Any, ...]]] = {}
        for chunk in iter_chunks(sorted(p for p in wanted_pairs if p not in known), _PAIRS):
            sql = (f"WITH w (t, i) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))}) SELECT {select} FROM w"
                   " JOIN spans ON spans.trace_id = w.t AND spans.span_id = w.i")
            for r in self._q(sql, [v for pair in chunk for v in pair]):
                by_trace.setdefault(r[trace], {})[r[span]] = r
        found = []
        for trace_id, span_ids, parent_ids in requests:
            ids, wanted = set(span_ids), {*span_ids, *parent_ids}
            found.append([r for r in by_trace.get(trace_id, {}).values() if r[span] in wanted or r[parent] in ids])
        return found

    def continuing(self, pairs: Sequence[tuple[Any, str]]) -> set[tuple[Any, str]]:
        """The (session key, trace id) pairs among these whose part of the trace has an LLM call that continues a
        turn (``trace_has`` ``continuing`` of many pairs in one statement)."""
        found: set[tuple[Any, str]] = set()
        width = len(KEY_COLUMNS)
        ordered = sorted(pairs)
        marks = f"({', '.join(['?'] * (width + 1))})"
        match = " AND ".join(f"spans.{c} = w.{c}" for c in KEY_COLUMNS)
        for chunk in iter_chunks(ordered, _PAIRS):
            sql = (f"WITH w ({KEY}, t) AS (VALUES {', '.join([marks] * len(chunk))}) SELECT {KEY}, t FROM w"
                   f" WHERE EXISTS (SELECT 1 FROM spans WHERE spans.trace_id = w.t AND spans.flags = 1 AND {match})")
            for r in self._q(sql, [v for key, t in chunk for v in (*key, t)]):
                found.add((tuple(r[:width]), r[width]))
        return found

    def component_rows(self, key: Any, trace_id: str, roots: Sequence[str], columns: Sequence[str]
                       ) -> list[tuple[Any, ...]]:
        """The rows of the session in this trace whose ``root_id`` is one of ``roots``."""
        found = []
        for condition, args in self._in("root_id", sorted(roots)):
            found.extend(self._q(f"SELECT {', '.join(columns)} FROM spans WHERE trace_id = ? AND {condition}"
                                 f" AND {KEY_EQ}", [trace_id, *args, *key]))
        return found

    def trace_has(self, key: Any, trace_id: str, what: str, exclude: Sequence[str] = ()) -> bool:
        """Whether the session's part of this trace has an agent or chain span (``agents``) or an LLM call that
        continues a turn (``continuing``), among the spans not in ``exclude``."""
        condition = "kind IN ('AGENT', 'CHAIN')" if what == "agents" else "flags = 1"
        sql = f"SELECT span_id FROM spans WHERE trace_id = ? AND {condition} AND {KEY_EQ}"
        excluded = set(exclude)
        if not excluded:
            return bool(self._q(sql + " LIMIT 1", [trace_id, *key]))
        return any(r[0] not in excluded for r in self._q(sql + f" LIMIT {len(excluded) + 1}", [trace_id, *key]))

    def set_roots(self, updates: Sequence[tuple[str | None, int, str, str]]) -> None:
        """(root_id, flags, trace_id, span_id) of span rows."""
        if updates:
            self._xmany(SET_ROOT, updates)

    def merge_roots(self, key: Any, trace_id: str, merges: Sequence[tuple[str, str]]) -> None:
        """Give the spans of each component (new root, old root) of the session in this trace the new root."""
        if merges:
            self._xmany(MERGE_ROOT, [(new, trace_id, old, *key) for new, old in merges])

    def turn_contribs(self, key: Any, trace_id: str, roots: Sequence[str] | None) -> list[tuple[Any, ...]]:
        """The aggregate columns (``CONTRIB_COLUMNS``) of the session's stored turns in this trace (those of
        these components only, unless None)."""
        if roots is None:
            return self._q(CONTRIBS, (*key, trace_id))
        found = []
        for condition, args in self._in("root_id", sorted(roots)):
            found.extend(self._q(CONTRIBS + f" AND {condition}", [*key, trace_id, *args]))
        return found

    def replace_turns(self, key: Any, trace_id: str | None, roots: Sequence[str] | None,
                      records: Sequence[dict[str, Any]]) -> None:
        """Drop the session's stored turns (of this trace only, unless None; of these components only, unless
        None), then store ``records``."""
        if trace_id is None:
            self._x(DELETE_ALL, key)
        elif roots is None:
            self._x(DELETE_TRACE, (*key, trace_id))
        else:
            for condition, args in self._in("root_id", sorted(roots)):
                self._x(DELETE_TRACE + f" AND {condition}", [*key, trace_id, *args])
        if records:
            self._xmany(INSERT, [turn_values(key, r) for r in records])

    def insert_turns(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Store these turns (each the ``turn_values`` of its session key and record) in one statement."""
        if rows:
            self._xmany(INSERT, rows)

    def turn_facts(self, key: Any, first_failed: bool) -> dict[str, Any]:
        """From the stored turns of a session, by index lookups: the first and the last turn, the first turn's
        model that has one (``model_at``: that turn's order), and (``first_failed``) the position and error of the
        first failed turn."""
        first = records_of(self._q(FIRST, key))
        last = records_of(self._q(LAST, key))
        model = self._q(FIRST_MODEL, key)
        failed = None
        if first_failed:
            row = self._q(FIRST_FAILED, key)
            if row:
                before = self._q(BEFORE, (*key, *row[0][:4]))
                failed = (int(before[0][0]), json.loads(row[0][4])["error"])
        return {"first": first[0] if first else None, "last": last[0] if last else None,
                "model": model[0][0] if model else None, "model_at": list(model[0][1:]) if model else None,
                "failed": failed}
