"""The evaluation tables, shared by the SQLite and PostgreSQL stores.

- ``evaluations``: one row per evaluation, with its session key (``custom_id``, ``version``) and the span it
  scores (``target_trace_id``, ``target_span_id``; both NULL: the session). Which turn a span belongs to is
  decided when the session is read (:func:`attach`), so a turn regrouping never strands an evaluation.
  Ids are deterministic: an evaluation event of a span is ``span:<trace>:<span>:<n>``-derived (a replayed span
  stores nothing twice); an evaluator's result derives from (session, evaluator, the end it ran for, n) (a run
  repeated after a crash replaces its own results).
- ``evaluation_queue``: the durable "to evaluate" queue: one row per session key that ended (COMPLETED /
  FAILED) and has not been evaluated for that end. The pipeline upserts it in the same transaction that ends the
  session (``Pipeline(evaluate=True)``); an end at a new time (the session was reopened and ended again) makes
  a done row pending again. Runners claim rows with a lease (a crashed runner's row is taken over when it runs
  out), and mark them done only if the end did not move meanwhile.

- ``galtea_sync_evaluations``: what the Galtea platform holds of each evaluation (``galtea_otel.sync.evaluations``):
  its state (``intent``: the body about to be sent, committed before the request; ``sent`` with its platform id;
  ``deleted``: superseded after it was sent, and deleted there; ``skipped``: nothing the platform can hold;
  ``refused``), so that every evaluation is sent once.

Writing evaluations outside the pipeline (an evaluator run, an annotation) also puts the session in the Galtea
outbox, in the same transaction, when the sync knows the session (it was sent, or it is in the outbox): an
evaluation recorded after its session was synced is sent too.

The tables are created by :func:`ensure_tables` when a store is opened (CREATE TABLE IF NOT EXISTS, so a store
of an older schema gets them in place), together with the ``spans.evaluations`` column.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stores import this module to open; the records (pydantic) load when one is made
    from galtea_otel.records import Evaluation, InferenceResult, SessionDetail, SpanRecord

# (custom_id, version, project): the project last, so that ``key[0]`` / ``key[1]`` keep their meaning.
Key = tuple[str, str, str]
TABLES = ("evaluations", "evaluation_queue", "galtea_sync_evaluations")
_COLUMNS = ("id", "custom_id", "version", "target_trace_id", "target_span_id", "name", "score", "label",
            "explanation", "evaluator_name", "evaluator_version", "source", "created_ns", "error", "superseded",
            "run_end_ns", "metadata", "project")


def ddl(id_type: str, int_type: str, real_type: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS evaluations (
    id {id_type} PRIMARY KEY, custom_id {id_type} NOT NULL, version {id_type} NOT NULL,
    target_trace_id {id_type}, target_span_id {id_type}, name {id_type} NOT NULL, score {real_type}, label TEXT,
    explanation TEXT, evaluator_name TEXT, evaluator_version TEXT, source TEXT NOT NULL,
    created_ns {int_type} NOT NULL, error TEXT, superseded INTEGER NOT NULL, run_end_ns {int_type}, metadata TEXT,
    project {id_type} NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS evaluations_by_session ON evaluations (custom_id, version);
CREATE INDEX IF NOT EXISTS evaluations_by_name ON evaluations (name, score);
CREATE TABLE IF NOT EXISTS evaluation_queue (
    custom_id {id_type} NOT NULL, version {id_type} NOT NULL, end_ns {int_type} NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_ns {int_type} NOT NULL, enqueued_ns {int_type} NOT NULL,
    project {id_type} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE INDEX IF NOT EXISTS evaluation_queue_due ON evaluation_queue (state, next_attempt_ns);
CREATE TABLE IF NOT EXISTS galtea_sync_evaluations (
    evaluation_id {id_type} PRIMARY KEY, custom_id {id_type} NOT NULL, version {id_type} NOT NULL,
    state TEXT NOT NULL, platform_id TEXT, body TEXT, error TEXT, project {id_type} NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS galtea_sync_evaluations_by_session
    ON galtea_sync_evaluations (custom_id, version, project);
"""


# Statements with ``?`` placeholders (PostgreSQL: swapped for ``%s``).
_UPSERT = (
    f"INSERT INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    " ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
)
# A span's events: moved only when the span's session key changed (a replay writes nothing).
_UPSERT_SPAN_EVENT = (
    f"INSERT INTO evaluations ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    " ON CONFLICT (id) DO UPDATE SET custom_id = excluded.custom_id, version = excluded.version,"
    " project = excluded.project"
    " WHERE evaluations.custom_id <> excluded.custom_id OR evaluations.version <> excluded.version"
    " OR evaluations.project <> excluded.project"
)
_ENQUEUE = (
    "INSERT INTO evaluation_queue (custom_id, version, project, end_ns, state, attempts, next_attempt_ns,"
    " enqueued_ns) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)"
    " ON CONFLICT (custom_id, version, project) DO UPDATE SET end_ns = excluded.end_ns, state = 'pending',"
    " attempts = 0,"
    " next_attempt_ns = excluded.next_attempt_ns, enqueued_ns = excluded.enqueued_ns"
    " WHERE evaluation_queue.end_ns <> excluded.end_ns"
)
_DUE = ("SELECT custom_id, version, project, end_ns, attempts, next_attempt_ns FROM evaluation_queue"
        " WHERE state = 'pending' AND next_attempt_ns <= ? ORDER BY next_attempt_ns, custom_id, version, project"
        " LIMIT ?")
_LEASE = ("UPDATE evaluation_queue SET next_attempt_ns = ?, attempts = attempts + 1"
          " WHERE custom_id = ? AND version = ? AND project = ? AND state = 'pending' AND next_attempt_ns = ?"
          " AND end_ns = ?")
_DONE = ("UPDATE evaluation_queue SET state = 'done'"
         " WHERE custom_id = ? AND version = ? AND project = ? AND end_ns = ? AND state = 'pending'")
_RELEASE = ("UPDATE evaluation_queue SET next_attempt_ns = ?"
            " WHERE custom_id = ? AND version = ? AND project = ? AND end_ns = ? AND state = 'pending'")
_SUPERSEDE = ("UPDATE evaluations SET superseded = 1 WHERE custom_id = ? AND version = ? AND project = ?"
              " AND source = 'evaluator' AND superseded = 0 AND evaluator_name = ?"
              " AND (run_end_ns IS NULL OR run_end_ns <> ?)")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM evaluations WHERE custom_id = ? AND version = ? AND project = ?" \
    " ORDER BY created_ns, id"


def _full(key: tuple[str, ...]) -> Key:
    """A Key from a Key or a (custom_id, version) pair (the default project's session)."""
    return (key[0], key[1], key[2] if len(key) > 2 else "default")


# --- reaching a store's connection ---------------------------------------------------------------------------------
# Kept here rather than in the stores: each store gets one line (``ensure_tables(self)`` when opened).

def _is_sqlite(obj: Any) -> bool:
    from galtea_otel.store.sqlite import SQLiteStore, _SQLiteTx

    return isinstance(obj, (SQLiteStore, _SQLiteTx))


class _Db:
    """Statements on one store, in its own short transactions: the store's plain-SQL handle
    (``SqlStore.write_sql`` / ``read_sql``, ``?`` marks, written once for both stores)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def write(self) -> Any:
        """A ``store.dialect.Sql`` (``execute(sql, args)`` returns the row count), in one write transaction."""
        return self.store.write_sql()

    def read(self, statement: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.store.read_sql(statement, args))


def _tx_exec(tx: Any, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run a statement for each of ``rows`` inside a pipeline transaction (``StoreTx.sql``)."""
    if rows:
        tx.sql.executemany(statement, [tuple(r) for r in rows])


def ensure_tables(store: Any) -> None:
    """Create the evaluation tables and the ``spans.evaluations`` column where they are missing."""
    if _is_sqlite(store):
        conn = store._connect()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(spans)")}
        if set(TABLES) <= tables and "evaluations" in columns:
            return
        with store._write() as write:
            for statement in filter(str.strip, ddl("TEXT", "INTEGER", "REAL").split(";")):
                write.execute(statement)
            if "evaluations" not in {r[1] for r in write.execute("PRAGMA table_info(spans)")}:
                write.execute("ALTER TABLE spans ADD COLUMN evaluations TEXT")
        return
    import psycopg

    from galtea_otel.store.base import StoreError

    try:
        conn = psycopg.connect(store._conninfo, **store._connect_kwargs)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the PostgreSQL store {store.url}: {exc}") from None
    try:
        with conn, conn.transaction():
            found = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relname = ANY(%s)", (list(TABLES),)).fetchone()
            column = conn.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = 'spans' AND column_name = 'evaluations'").fetchone()
            if found is not None and found[0] == len(TABLES) and column is not None:
                return
            conn.execute("SELECT pg_advisory_xact_lock(1734828641, 11)")  # one creator at a time (issue 11)
            for statement in filter(str.strip, ddl('TEXT COLLATE "C"', "BIGINT", "DOUBLE PRECISION").split(";")):
                conn.execute(statement)
            conn.execute("ALTER TABLE spans ADD COLUMN IF NOT EXISTS evaluations TEXT")
    except psycopg.Error as exc:
        raise StoreError(f"cannot create the evaluation tables in {store.url}: {exc}") from exc
    finally:
        conn.close()


# --- the write path (inside the pipeline's transaction) ---------------------------------------------------------

def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:32]


def record_span_evaluations(tx: Any, rows_by_key: Mapping[Key, Sequence[Any]]) -> int:
    """Store the evaluation events carried by these sessions' span rows (``SpanRow.evaluations``)."""
    values = []
    for key, rows in rows_by_key.items():
        for row in rows:
            if not row.evaluations:
                continue
            try:
                items = json.loads(row.evaluations)
            except ValueError:
                continue
            # A carrier of an OTLP log record (galtea_otel.decode.otlp_logs) scores its parent, the logged span.
            carrier = row.session_event == "evaluation"
            trace_id = row.trace_id
            span_id = row.parent_span_id if carrier else row.span_id
            for n, item in enumerate(items):
                evaluator = item.get("evaluator") or {}
                on_session = item.get("session") or span_id is None
                metadata = {"response_id": item["response_id"]} if item.get("response_id") else None
                values.append((
                    _digest("span", row.trace_id, row.span_id, n), key[0], key[1],
                    None if on_session else trace_id, None if on_session else span_id,
                    item["name"], item.get("score"), item.get("label"), item.get("explanation"),
                    evaluator.get("name"), evaluator.get("version"), item.get("source") or "ingested",
                    int(item.get("time_ns") or row.end_ns), item.get("error"), 0, None,
                    json.dumps(metadata) if metadata else None, key[2],
                ))
    _tx_exec(tx, _UPSERT_SPAN_EVENT, values)
    return len(values)


def enqueue_ended(tx: Any, summaries: Iterable[Mapping[str, Any]], now_ns: int | None = None) -> None:
    """Queue for evaluation the sessions these summaries end (COMPLETED / FAILED), once per end."""
    now = now_ns if now_ns is not None else time.time_ns()
    rows = [(s["custom_id"], s["version"], s.get("project") or "default", s["ended_ns"], now, now) for s in summaries
            if s["status"] in ("COMPLETED", "FAILED") and s.get("ended_ns") is not None]
    _tx_exec(tx, _ENQUEUE, rows)


# --- the queue ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueItem:
    key: Key
    end_ns: int
    attempts: int


def claim(store: Any, now_ns: int, limit: int, lease_ns: int) -> list[QueueItem]:
    """Claim up to ``limit`` due sessions for ``lease_ns`` (a row another runner holds is skipped)."""
    db = _Db(store)
    due = db.read(_DUE, (now_ns, limit))
    claimed = []
    with db.write() as cur:
        for custom_id, version, project, end_ns, attempts, next_ns in due:
            if cur.execute(_LEASE, (now_ns + lease_ns, custom_id, version, project, next_ns, end_ns)) == 1:
                claimed.append(QueueItem((custom_id, version, project), end_ns, attempts + 1))
    return claimed


def complete(store: Any, item: QueueItem, results: Sequence[Evaluation], run_end_ns: int,
             evaluator_names: Sequence[str]) -> bool:
    """Store a run's results (earlier runs of these evaluators are marked superseded) and mark the queue row
    done, in one transaction. False when the session ended again meanwhile (the row stays due: it runs again)."""
    db = _Db(store)
    with db.write() as cur:
        for name in evaluator_names:
            cur.execute(_SUPERSEDE, (*item.key, name, run_end_ns))
        for evaluation in results:
            cur.execute(_UPSERT, _values(item.key, evaluation, run_end_ns))
        enqueue_sync(cur, item.key)
        return bool(cur.execute(_DONE, (*item.key, item.end_ns)) == 1)


def release(store: Any, item: QueueItem, next_attempt_ns: int) -> None:
    """Give a claimed row back (the runner is stopping): due again at ``next_attempt_ns``."""
    db = _Db(store)
    with db.write() as cur:
        cur.execute(_RELEASE, (next_attempt_ns, *item.key, item.end_ns))


def queue_counts(store: Any) -> dict[str, int]:
    rows = _Db(store).read("SELECT state, count(*) FROM evaluation_queue GROUP BY state")
    return {state: int(n) for state, n in rows}


# --- evaluations ----------------------------------------------------------------------------------------------------

def _values(key: Key, e: Evaluation, run_end_ns: int | None) -> tuple[Any, ...]:
    return (
        e.id, key[0], key[1], e.trace_id if e.span_id else None, e.span_id, e.name, e.score, e.label, e.explanation,
        e.evaluator.name if e.evaluator else None, e.evaluator.version if e.evaluator else None, e.source,
        int(e.created_at.timestamp() * 1e9), e.error, int(e.superseded), run_end_ns,
        json.dumps(e.metadata, sort_keys=True, default=str) if e.metadata else None, key[2],
    )


def save(store: Any, key: tuple[str, ...], evaluations: Sequence[Evaluation]) -> None:
    """Store evaluations of one session (annotations...), in one transaction."""
    key = _full(key)
    db = _Db(store)
    with db.write() as cur:
        for evaluation in evaluations:
            cur.execute(_UPSERT, _values(key, evaluation, None))
        enqueue_sync(cur, key)


def enqueue_sync(cur: Any, key: Key, now_ns: int | None = None) -> None:
    """Inside a write (``_Db.write``): put the session in the Galtea outbox if the sync knows it
    (``galtea_otel.sync.outbox``; imported here, so that opening a store imports no sync)."""
    from galtea_otel.sync.outbox import enqueue_if_known

    enqueue_if_known(cur, key, now_ns)


def _from_row(row: Sequence[Any]) -> Evaluation:
    from galtea_otel.records import Evaluation, EvaluatorRef

    (eid, _c, _v, trace_id, span_id, name, score, label, explanation, ev_name, ev_version, source, created_ns,
     error, superseded, _run, metadata, _project) = row
    return Evaluation(
        id=eid, name=name, score=score, label=label, explanation=explanation,
        evaluator=EvaluatorRef(name=ev_name, version=ev_version) if ev_name else None,
        source=source, target="session" if span_id is None else "turn", span_id=span_id, trace_id=trace_id,
        created_at=datetime.fromtimestamp(created_ns / 1e9, tz=UTC), error=error,
        superseded=bool(superseded), metadata=json.loads(metadata) if metadata else {},
    )


def load(store: Any, key: tuple[str, ...]) -> list[Evaluation]:
    """A session's evaluations, oldest first."""
    key = _full(key)
    return [_from_row(r) for r in _Db(store).read(_SELECT, key)]


def _span_ids(spans: Sequence[SpanRecord]) -> Iterator[tuple[str, str]]:
    for span in spans:
        yield span.trace_id, span.id
        yield from _span_ids(span.children)


def attach(detail: SessionDetail, found: Sequence[Evaluation]) -> SessionDetail:
    """The session with its evaluations: each on the turn that holds the span it scores, else on the session."""
    if not found:
        return detail
    owner: dict[tuple[str, str], InferenceResult] = {}
    for turn in detail.inference_results:
        owner[(turn.trace_id, turn.id)] = turn
        for ids in _span_ids(turn.spans):
            owner.setdefault(ids, turn)
    on_turn: dict[str, list[Evaluation]] = {}
    on_session: list[Evaluation] = []
    for evaluation in found:
        scored = owner.get((evaluation.trace_id, evaluation.span_id)) \
            if evaluation.trace_id and evaluation.span_id else None
        if scored is None:
            on_session.append(evaluation.model_copy(update={"target": "session", "turn_id": None}))
        else:
            on_turn.setdefault(scored.id, []).append(
                evaluation.model_copy(update={"target": "turn", "turn_id": scored.id}))
    results = [t.model_copy(update={"evaluations": [*t.evaluations, *on_turn.get(t.id, [])]})
               if t.id in on_turn else t for t in detail.inference_results]
    return detail.model_copy(update={"inference_results": results,
                                     "evaluations": [*detail.evaluations, *on_session]})


def with_evaluations(store: Any, key: Key, detail: SessionDetail) -> SessionDetail:
    """``attach`` what the store holds for this session (the hook of ``pipeline.read_session``)."""
    return attach(detail, load(store, key))


# --- the session-listing filter (``sessions list --eval 'NAME<0.5'``) -------------------------------------------

_FILTER = re.compile(r"^\s*(?P<name>[^<>=!]+?)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.+?)\s*$")
_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "!=": "<>"}


def parse_filter(expression: str) -> tuple[str, str, float | str]:
    """``NAME<0.5``, ``NAME>=4``, ``NAME=pass`` (a label), ``NAME!=fail`` -> (name, operator, value)."""
    match = _FILTER.match(expression)
    if match is None:
        raise ValueError(f"evaluation filter {expression!r}: expected NAME<op>VALUE with op one of "
                         "<, <=, >, >=, =, != (e.g. 'helpfulness<0.5' or 'verdict=pass')")
    name, op, raw = match["name"], match["op"], match["value"]
    try:
        return name, op, float(raw)
    except ValueError:
        if op not in ("=", "!="):
            raise ValueError(f"evaluation filter {expression!r}: {raw!r} is not a number (a label compares with "
                             "= or != only)") from None
        return name, op, raw


def filter_sql(expressions: Sequence[str], mark: str) -> tuple[list[str], list[Any]]:
    """WHERE conditions on ``sessions`` (one per expression, all must hold) and their arguments: the session has
    a current (not superseded, not failed) evaluation of that name, of the session or of one of its turns, that
    satisfies it."""
    where: list[str] = []
    args: list[Any] = []
    for expression in expressions:
        name, op, value = parse_filter(expression)
        column = "score" if isinstance(value, float) else "label"
        where.append(
            "EXISTS (SELECT 1 FROM evaluations e WHERE e.custom_id = sessions.custom_id"
            " AND e.project = sessions.project"
            f" AND e.version = sessions.version AND e.superseded = 0 AND e.error IS NULL AND e.name = {mark}"
            f" AND e.{column} {_OPS[op]} {mark})")
        args += [name, value]
    return where, args
