"""The Galtea sync's outbox: the one interface to its tables, written once for SQLite and PostgreSQL.

The tables (``galtea_outbox``, ``galtea_sync_sessions``, ``galtea_sync_turns``, ``galtea_sync_intents``: see
:mod:`galtea_otel.sync.schema`) are created and migrated with the store's (``galtea_otel.store.schema``); this
module is what reads and writes them. The stores know nothing of it: an :class:`SqlOutbox` runs its statements
through the store's plain-SQL handle (``Store.write_sql`` / ``Store.read_sql``, ``store.dialect``), each call in
a short transaction of its own; the only dialect difference is how a claim keeps concurrent workers apart
(``Dialect.lock_rows``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, nothing under SQLite's single writer).

What must commit with the records is not a method of the outbox but a function of a caller's transaction:
:func:`enqueue` (the pipeline, with ``StoreTx.sql``) and :func:`enqueue_if_known` (an evaluation written
outside the pipeline), so an outbox row is never committed without the change it announces, nor the reverse.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from galtea_otel.store.base import AnyKey, Key, SqlStore, full_key
from galtea_otel.store.dialect import Sql
from galtea_otel.sync.schema import OutboxItem, ParkedItem, SyncOverview, SyncState, sync_state_from_rows

# Statements written once, with ``?`` marks (``Dialect.sql`` makes them PostgreSQL's). Every one takes a session
# key as (custom_id, version, project), in that order.
ENQUEUE = (
    "INSERT INTO galtea_outbox (custom_id, version, project, seq, state, attempts, next_attempt_ns, enqueued_ns,"
    " last_error) VALUES (?, ?, ?, 1, 'pending', 0, ?, ?, NULL)"
    " ON CONFLICT (custom_id, version, project) DO UPDATE SET seq = galtea_outbox.seq + 1,"
    " enqueued_ns = excluded.enqueued_ns,"
    " next_attempt_ns = CASE WHEN galtea_outbox.state = 'parked' THEN excluded.next_attempt_ns"
    " ELSE galtea_outbox.next_attempt_ns END,"
    " attempts = CASE WHEN galtea_outbox.state = 'parked' THEN 0 ELSE galtea_outbox.attempts END,"
    " state = 'pending'"
)
# Sessions never sent, or changed since they were last sent, that are not in the outbox yet (parked stay parked).
BACKFILL = (
    "INSERT INTO galtea_outbox (custom_id, version, project, seq, state, attempts, next_attempt_ns, enqueued_ns,"
    " last_error) SELECT s.custom_id, s.version, s.project, 1, 'pending', 0, ?, ?, NULL FROM sessions s"
    " LEFT JOIN galtea_sync_sessions g ON g.custom_id = s.custom_id AND g.version = s.version"
    " AND g.project = s.project"
    " WHERE g.synced_updated_ns IS NULL OR g.synced_updated_ns < s.updated_ns"
    " ON CONFLICT (custom_id, version, project) DO NOTHING"
)
DUE = (
    "SELECT custom_id, version, project, seq, attempts FROM galtea_outbox"
    " WHERE state = 'pending' AND next_attempt_ns <= ?"
    " ORDER BY next_attempt_ns, enqueued_ns, custom_id, version, project LIMIT ?"
)
LEASE = "UPDATE galtea_outbox SET next_attempt_ns = ? WHERE custom_id = ? AND version = ? AND project = ? AND seq = ?"
DONE = "DELETE FROM galtea_outbox WHERE custom_id = ? AND version = ? AND project = ? AND seq = ?"
# Something changed while it was being sent: due again at once.
AGAIN = (
    "UPDATE galtea_outbox SET next_attempt_ns = ?, attempts = 0, last_error = NULL"
    " WHERE custom_id = ? AND version = ? AND project = ?"
)
DEFER = (
    "UPDATE galtea_outbox SET next_attempt_ns = ?, attempts = attempts + 1, last_error = ?"
    " WHERE custom_id = ? AND version = ? AND project = ? AND state = 'pending'"
)
PARK = ("UPDATE galtea_outbox SET state = 'parked', last_error = ?"
        " WHERE custom_id = ? AND version = ? AND project = ? AND seq = ?")
SYNCED = ("UPDATE galtea_sync_sessions SET synced_updated_ns = ?"
          " WHERE custom_id = ? AND version = ? AND project = ?")
SESSION_STATE = (
    "SELECT g.platform_id, g.version_id, g.status, g.fingerprint, s.updated_ns FROM sessions s"
    " LEFT JOIN galtea_sync_sessions g ON g.custom_id = s.custom_id AND g.version = s.version"
    " AND g.project = s.project"
    " WHERE s.custom_id = ? AND s.version = ? AND s.project = ?"
)
TURNS_STATE = (
    "SELECT turn_id, platform_id, spans_sent, fingerprint FROM galtea_sync_turns"
    " WHERE custom_id = ? AND version = ? AND project = ?"
)
SAVE_SESSION = (
    "INSERT INTO galtea_sync_sessions (custom_id, version, project, platform_id, version_id, status, fingerprint,"
    " synced_updated_ns, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)"
    " ON CONFLICT (custom_id, version, project) DO UPDATE SET platform_id = excluded.platform_id,"
    " version_id = excluded.version_id, status = excluded.status, fingerprint = excluded.fingerprint,"
    " updated_ns = excluded.updated_ns"
)
SAVE_TURN = (
    "INSERT INTO galtea_sync_turns (custom_id, version, project, turn_id, platform_id, spans_sent, fingerprint)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (custom_id, version, project, turn_id) DO UPDATE SET platform_id = excluded.platform_id,"
    " spans_sent = excluded.spans_sent, fingerprint = excluded.fingerprint"
)
# Saving a turn's platform id ends its intent, in the same transaction.
FORGET_INTENT = ("DELETE FROM galtea_sync_intents"
                 " WHERE custom_id = ? AND version = ? AND project = ? AND turn_id = ?")
FORGET_TURN = "DELETE FROM galtea_sync_turns WHERE custom_id = ? AND version = ? AND project = ? AND turn_id = ?"
INTENTS_STATE = ("SELECT turn_id, body FROM galtea_sync_intents"
                 " WHERE custom_id = ? AND version = ? AND project = ?")
SAVE_INTENT = (
    "INSERT INTO galtea_sync_intents (custom_id, version, project, turn_id, body) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (custom_id, version, project, turn_id) DO UPDATE SET body = excluded.body"
)
COUNTS = "SELECT state, count(*) FROM galtea_outbox GROUP BY state"
SYNCED_COUNT = "SELECT count(*) FROM galtea_sync_sessions WHERE platform_id IS NOT NULL"
PARKED = (
    "SELECT custom_id, version, project, attempts, last_error, enqueued_ns FROM galtea_outbox"
    " WHERE state = 'parked' ORDER BY enqueued_ns DESC, custom_id, version, project LIMIT ?"
)
REQUEUE_PARKED = "UPDATE galtea_outbox SET state = 'pending', attempts = 0, next_attempt_ns = ? WHERE state = 'parked'"



# The session into the outbox only when the sync knows it (sent before, or in the outbox now: being sent, its
# ``seq`` moves, so it is sent again): an evaluation recorded after its session was synced is sent too.
ENQUEUE_IF_KNOWN = (
    "INSERT INTO galtea_outbox (custom_id, version, project, seq, state, attempts, next_attempt_ns, enqueued_ns,"
    " last_error) SELECT ?, ?, ?, 1, 'pending', 0, ?, ?, NULL WHERE EXISTS (SELECT 1 FROM galtea_sync_sessions g"
    " WHERE g.custom_id = ? AND g.version = ? AND g.project = ?) OR EXISTS (SELECT 1 FROM galtea_outbox o"
    " WHERE o.custom_id = ? AND o.version = ? AND o.project = ?)"
    + ENQUEUE.partition(" VALUES (?, ?, ?, 1, 'pending', 0, ?, ?, NULL)")[2]
)


def enqueue(sql: Sql, keys: Sequence[Key], now_ns: int) -> None:
    """Inside the caller's transaction (``StoreTx.sql``): these sessions have something to send."""
    if keys:
        sql.executemany(ENQUEUE, [(*k, now_ns, now_ns) for k in keys])


def enqueue_if_known(sql: Sql, key: Key, now_ns: int | None = None) -> None:
    """Inside the caller's transaction: put the session in the outbox if the sync knows it."""
    now = now_ns if now_ns is not None else time.time_ns()
    sql.execute(ENQUEUE_IF_KNOWN, (*key, now, now, *key, *key))


class Outbox(Protocol):
    """What the sync worker (``galtea_otel.sync.worker``), its sink, ``galtea-otel sync`` and the UI need of the
    outbox. Each call is its own short transaction."""

    def backfill(self, now_ns: int) -> int:
        """Enqueue the sessions never sent or changed since last sent that are not in the outbox; return how
        many."""

    def claim(self, now_ns: int, limit: int, lease_ns: int) -> list[OutboxItem]:
        """Claim up to ``limit`` due outbox rows (oldest first) for ``lease_ns``; rows claimed by another
        worker whose lease has not run out are skipped."""

    def state(self, key: AnyKey) -> SyncState | None:
        """What the platform holds of this session; None when the session is no longer in the store."""

    def save_session(self, key: AnyKey, platform_id: str | None, version_id: str | None, status: str | None,
                     fingerprint: str | None) -> None: ...

    def save_turn(self, key: AnyKey, turn_id: str, platform_id: str, spans_sent: Iterable[str],
                  fingerprint: str | None) -> None:
        """Record what the platform holds of a turn (and end the turn's creation intent, if any)."""

    def save_intent(self, key: AnyKey, turn_id: str, body: dict[str, Any]) -> None:
        """Record, before it is sent, the body of the ``POST inferenceResults`` that creates a turn."""

    def forget_turn(self, key: AnyKey, turn_id: str) -> None:
        """Forget a turn (and its intent): it was deleted from the platform, or never reached it."""

    def complete(self, item: OutboxItem, outcome: str, now_ns: int, *, next_attempt_ns: int = 0,
                 error: str | None = None, synced_updated_ns: int | None = None) -> None:
        """End a claim: ``done`` (removed unless it changed meanwhile, then due again), ``defer`` (retry at
        ``next_attempt_ns``), ``park`` (refused: kept with ``error`` until re-enqueued), ``release`` (claimed
        but not tried: due again at ``next_attempt_ns``, or now)."""

    def overview(self, parked_limit: int = 50) -> SyncOverview: ...

    def requeue_parked(self, now_ns: int) -> int:
        """Make every parked row pending again; return how many."""


class SqlOutbox:
    """The outbox of a store (SQLite or PostgreSQL): the one implementation."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        # Due rows, locked (PostgreSQL: SKIP LOCKED) so that concurrent workers never claim the same row.
        self._due = DUE + store.dialect.lock_rows

    def backfill(self, now_ns: int) -> int:
        with self.store.write_sql() as sql:
            return max(sql.execute(BACKFILL, (now_ns, now_ns)), 0)

    def claim(self, now_ns: int, limit: int, lease_ns: int) -> list[OutboxItem]:
        with self.store.write_sql() as sql:
            items = [OutboxItem((r[0], r[1], r[2]), r[3], r[4]) for r in sql.query(self._due, (now_ns, limit))]
            if items:
                sql.executemany(LEASE, [(now_ns + lease_ns, *i.key, i.seq) for i in items])
        return items

    def state(self, key: AnyKey) -> SyncState | None:
        key = full_key(key)
        read = self.store.read_sql
        rows = read(SESSION_STATE, key)
        if not rows:
            return None
        return sync_state_from_rows(rows[0], read(TURNS_STATE, key), read(INTENTS_STATE, key))

    def save_session(self, key: AnyKey, platform_id: str | None, version_id: str | None, status: str | None,
                     fingerprint: str | None) -> None:
        with self.store.write_sql() as sql:
            sql.execute(SAVE_SESSION,
                        (*full_key(key), platform_id, version_id, status, fingerprint, time.time_ns()))

    def save_turn(self, key: AnyKey, turn_id: str, platform_id: str, spans_sent: Iterable[str],
                  fingerprint: str | None) -> None:
        key = full_key(key)
        with self.store.write_sql() as sql:
            sql.execute(SAVE_TURN, (*key, turn_id, platform_id, json.dumps(sorted(spans_sent)), fingerprint))
            sql.execute(FORGET_INTENT, (*key, turn_id))

    def save_intent(self, key: AnyKey, turn_id: str, body: dict[str, Any]) -> None:
        with self.store.write_sql() as sql:
            sql.execute(SAVE_INTENT, (*full_key(key), turn_id, json.dumps(body, sort_keys=True)))

    def forget_turn(self, key: AnyKey, turn_id: str) -> None:
        key = full_key(key)
        with self.store.write_sql() as sql:
            sql.execute(FORGET_TURN, (*key, turn_id))
            sql.execute(FORGET_INTENT, (*key, turn_id))

    def complete(self, item: OutboxItem, outcome: str, now_ns: int, *, next_attempt_ns: int = 0,
                 error: str | None = None, synced_updated_ns: int | None = None) -> None:
        if outcome not in ("done", "defer", "park", "release"):
            raise ValueError(f"unknown outcome {outcome!r}")
        key = item.key
        with self.store.write_sql() as sql:
            if synced_updated_ns is not None:
                sql.execute(SYNCED, (synced_updated_ns, *key))
            if outcome == "done":
                if sql.execute(DONE, (*key, item.seq)) == 0:
                    sql.execute(AGAIN, (now_ns, *key))
            elif outcome == "defer":
                sql.execute(DEFER, (next_attempt_ns, error, *key))
            elif outcome == "park":
                if sql.execute(PARK, (error, *key, item.seq)) == 0:
                    sql.execute(AGAIN, (now_ns, *key))
            else:  # release: claimed but not tried (the worker is stopping, or paused)
                sql.execute(AGAIN, (next_attempt_ns or now_ns, *key))

    def overview(self, parked_limit: int = 50) -> SyncOverview:
        read = self.store.read_sql
        counts = {r[0]: int(r[1]) for r in read(COUNTS)}
        synced = int(read(SYNCED_COUNT)[0][0])
        parked = [ParkedItem((r[0], r[1], r[2]), r[3], r[4], r[5]) for r in read(PARKED, (parked_limit,))]
        return SyncOverview(pending=counts.get("pending", 0), parked=counts.get("parked", 0),
                            synced_sessions=synced, parked_items=parked)

    def requeue_parked(self, now_ns: int) -> int:
        with self.store.write_sql() as sql:
            return max(sql.execute(REQUEUE_PARKED, (now_ns,)), 0)


def open_outbox(store: SqlStore) -> Outbox:
    """The outbox of an open store."""
    return SqlOutbox(store)
