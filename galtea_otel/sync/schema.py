"""The sync tables (schema v3) and what the stores return about them, shared by SQLite and PostgreSQL.

- ``galtea_outbox``: one row per session key that has something to send to the Galtea platform. The pipeline
  upserts it in the same transaction as the session's records (``seq`` grows at each change); the worker
  *claims* due rows by pushing ``next_attempt_ns`` forward by a lease (so another worker, or a restart after a
  kill -9, takes it over only once the lease ran out), then deletes it (``done``, only if ``seq`` did not move),
  defers it (retryable failure, backoff), or parks it (``state = 'parked'``, the platform refused it).
- ``galtea_sync_sessions`` / ``galtea_sync_turns``: what the platform holds: the platform ids of sessions and
  turns, the session status and fields last sent, the span ids already created under each turn and a digest
  of the turn's fields last sent (``fingerprint``: a turn that changes after it was created is updated). They
  make re-delivery idempotent.
- ``galtea_sync_intents``: the exact body of a ``POST inferenceResults`` about to be sent, committed before the
  request and removed in the transaction that records the turn's platform id. When the answer is lost, the next
  pass adopts the platform turn that matches the *intended* body (the turn may have changed since), and a turn
  that no longer exists locally has its intended creation looked up and deleted.

This module imports nothing heavy: the stores import it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# (custom_id, version, project): the project last, so that ``key[0]`` / ``key[1]`` keep their meaning.
Key = tuple[str, str, str]

OUTBOX_TABLES = ("galtea_outbox", "galtea_sync_sessions", "galtea_sync_turns", "galtea_sync_intents")


def ddl(id_type: str, int_type: str) -> str:
    """The CREATE statements of the sync tables, for a store's identifier and integer column types."""
    return f"""
CREATE TABLE IF NOT EXISTS galtea_outbox (
    custom_id {id_type} NOT NULL, version {id_type} NOT NULL, seq {int_type} NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_attempt_ns {int_type} NOT NULL, enqueued_ns {int_type} NOT NULL,
    last_error TEXT, project {id_type} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE INDEX IF NOT EXISTS galtea_outbox_due ON galtea_outbox (state, next_attempt_ns);
CREATE TABLE IF NOT EXISTS galtea_sync_sessions (
    custom_id {id_type} NOT NULL, version {id_type} NOT NULL, platform_id TEXT, version_id TEXT, status TEXT,
    fingerprint TEXT, synced_updated_ns {int_type}, updated_ns {int_type} NOT NULL,
    project {id_type} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project)
);
CREATE TABLE IF NOT EXISTS galtea_sync_turns (
    custom_id {id_type} NOT NULL, version {id_type} NOT NULL, turn_id {id_type} NOT NULL,
    platform_id TEXT NOT NULL, spans_sent TEXT NOT NULL, fingerprint TEXT,
    project {id_type} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project, turn_id)
);
CREATE TABLE IF NOT EXISTS galtea_sync_intents (
    custom_id {id_type} NOT NULL, version {id_type} NOT NULL, turn_id {id_type} NOT NULL, body TEXT NOT NULL,
    project {id_type} NOT NULL DEFAULT 'default',
    PRIMARY KEY (custom_id, version, project, turn_id)
);
"""


# Columns added to the sync tables after their first release, as (table, column, type): a store of an older
# schema gets them by ALTER TABLE ... ADD COLUMN when it is opened (``ddl`` already has them for a new store).
# v3: galtea_sync_turns.fingerprint (NULL for a turn sent by an older galtea-otel: updated once, at its
# session's next sync).
# v4: the table galtea_sync_intents (created by ``ddl``'s CREATE TABLE IF NOT EXISTS when an older store is opened).
# v7 (issue 12): ``project`` in every key (``store.rows.REKEYED``: the tables are re-keyed, not altered here).
# Every statement below takes a session key as (custom_id, version, project), in that order.
ADDED_COLUMNS = (("galtea_sync_turns", "fingerprint", "TEXT"),)


# Statements written with ``?`` placeholders; the PostgreSQL store swaps them for ``%s``.
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


@dataclass(frozen=True)
class OutboxItem:
    """A claimed outbox row: the session to reconcile, and ``seq`` as it was when claimed."""

    key: Key
    seq: int
    attempts: int


@dataclass
class TurnState:
    """What the platform holds of one turn: its id, the spans created under it, and the digest of its fields as
    last sent (:func:`galtea_otel.sync.payloads.turn_fingerprint`; None: unknown, the turn is updated)."""

    platform_id: str
    spans_sent: set[str] = field(default_factory=set)
    fingerprint: str | None = None


@dataclass
class SyncState:
    """What the platform is known to hold for one session (empty when nothing was sent yet)."""

    session_updated_ns: int
    platform_id: str | None = None
    version_id: str | None = None
    status: str | None = None
    fingerprint: str | None = None
    turns: dict[str, TurnState] = field(default_factory=dict)
    # Turn key -> the ``POST inferenceResults`` body last about to be sent for a turn whose platform id is not
    # known (its answer was lost, or the sender stopped): see ``galtea_sync_intents``.
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)


def sync_state_from_rows(
    session: Sequence[Any], turns: Iterable[Sequence[Any]], intents: Iterable[Sequence[Any]]
) -> SyncState:
    """A SyncState from the rows of SESSION_STATE, TURNS_STATE and INTENTS_STATE (the same for every store)."""
    return SyncState(
        session_updated_ns=session[4], platform_id=session[0], version_id=session[1], status=session[2],
        fingerprint=session[3],
        turns={r[0]: TurnState(r[1], set(json.loads(r[2])), r[3]) for r in turns},
        intents={r[0]: json.loads(r[1]) for r in intents},
    )


@dataclass(frozen=True)
class ParkedItem:
    key: Key
    attempts: int
    error: str | None
    enqueued_ns: int


@dataclass(frozen=True)
class SyncOverview:
    pending: int
    parked: int
    synced_sessions: int
    parked_items: list[ParkedItem]
