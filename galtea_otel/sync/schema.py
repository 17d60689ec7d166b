"""What the Galtea outbox (:mod:`galtea_otel.sync.outbox`) returns about its tables (defined in
``galtea_otel.store.schema``).

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

This module imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# (custom_id, version, project): the project last, so that ``key[0]`` / ``key[1]`` keep their meaning.
Key = tuple[str, str, str]

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
