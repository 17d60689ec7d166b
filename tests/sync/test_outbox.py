"""The Galtea outbox (``galtea_otel.sync.outbox``), one contract run against both stores: written once, the
outbox behaves the same on SQLite and PostgreSQL; the only difference (concurrent claimers, PostgreSQL) is tested
against a real second transaction holding a row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.store import Store, open_store
from galtea_otel.store.base import Key
from galtea_otel.sync.outbox import SqlOutbox, enqueue, open_outbox
from tests.pipeline.spans import collect, conversation, sdk_tracer

SECOND = 10**9


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 's.db'}"
    else:
        url = request.getfixturevalue("pg_url")()
    opened = open_store(url)
    yield opened
    opened.close()


def _sessions(store: Store, *names: str) -> list[Key]:
    """Sessions in the store (one turn each), ingested with the sync off: the outbox is empty."""
    with sdk_tracer() as (tracer, exporter):
        for name in names:
            conversation(tracer, name, "1.0", 1)
        Pipeline(store).ingest(collect(exporter))
    return [(name, "1.0", "default") for name in names]


def _enqueue(store: Store, keys: list[Key], now: int) -> None:
    with store.transaction() as tx:
        enqueue(tx.sql, keys, now)


def test_the_outbox_row_commits_with_the_records_or_not_at_all(store: Store) -> None:
    outbox = open_outbox(store)
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "conv-off", "1.0", 1)
        Pipeline(store).ingest(collect(exporter))
        assert outbox.overview().pending == 0
        exporter.clear()
        conversation(tracer, "conv-on", "1.0", 2)
        Pipeline(store, sync=True).ingest(collect(exporter))
    assert [i.key for i in outbox.claim(time.time_ns(), 10, SECOND)] == [("conv-on", "1.0", "default")]

    class Boom(Exception):
        pass

    key = ("conv-x", "1.0", "default")
    with pytest.raises(Boom), store.transaction() as tx:
        tx.add_counter("probe", 1)
        enqueue(tx.sql, [key], time.time_ns())
        raise Boom
    assert "probe" not in store.counters() and outbox.overview().pending == 1
    with store.transaction() as tx:
        tx.add_counter("probe", 1)
        enqueue(tx.sql, [key], time.time_ns())
    assert store.counters()["probe"] == 1 and outbox.overview().pending == 2


def test_claim_lease_done_and_a_change_while_sending(store: Store) -> None:
    outbox = open_outbox(store)
    a, b = _sessions(store, "a", "b")
    now = time.time_ns()
    _enqueue(store, [a, b], now)
    _enqueue(store, [a], now + 1)  # a changed again: seq 2
    claimed = outbox.claim(now + 2, 10, 60 * SECOND)
    assert [(i.key, i.seq) for i in claimed] == [(b, 1), (a, 2)]  # oldest (last enqueued) first
    assert outbox.claim(now + 3, 10, 60 * SECOND) == []  # leased
    assert len(outbox.claim(now + 61 * SECOND, 10, 60 * SECOND)) == 2  # the lease ran out: taken over
    _enqueue(store, [b], now + 4)  # b changes while being sent
    item_b, item_a = claimed
    outbox.complete(item_a, "done", now + 5)
    outbox.complete(item_b, "done", now + 5)
    overview = outbox.overview()
    assert (overview.pending, overview.parked) == (1, 0)  # b is kept, due again at once
    [again] = outbox.claim(now + 6, 10, SECOND)
    assert (again.key, again.seq, again.attempts) == (b, 2, 0)


def test_defer_park_requeue_and_release(store: Store) -> None:
    outbox = open_outbox(store)
    a, b = _sessions(store, "a", "b")
    now = time.time_ns()
    _enqueue(store, [a, b], now)
    item_a, item_b = outbox.claim(now, 10, 60 * SECOND)
    outbox.complete(item_a, "defer", now, next_attempt_ns=now + 10 * SECOND, error="503 \x00 busy")
    outbox.complete(item_b, "park", now, error="422 refused", synced_updated_ns=1)
    assert outbox.claim(now + SECOND, 10, SECOND) == []
    [deferred] = outbox.claim(now + 11 * SECOND, 10, SECOND)
    assert (deferred.key, deferred.attempts) == (a, 1)
    outbox.complete(deferred, "release", now, next_attempt_ns=now + 20 * SECOND)
    assert outbox.claim(now + 19 * SECOND, 10, SECOND) == []
    overview = outbox.overview()
    assert (overview.pending, overview.parked) == (1, 1)
    [parked] = overview.parked_items
    assert (parked.key, parked.error) == (b, "422 refused")
    assert outbox.requeue_parked(now) == 1
    assert {i.key for i in outbox.claim(now + 21 * SECOND, 10, SECOND)} == {a, b}
    with pytest.raises(ValueError):
        outbox.complete(deferred, "lost", now)


def test_a_change_to_a_parked_session_makes_it_pending_again(store: Store) -> None:
    outbox = open_outbox(store)
    [a] = _sessions(store, "a")
    now = time.time_ns()
    _enqueue(store, [a], now)
    [item] = outbox.claim(now, 10, SECOND)
    outbox.complete(item, "park", now, error="refused")
    _enqueue(store, [a], now + 1)
    [again] = outbox.claim(now + 2, 10, SECOND)
    assert (again.key, again.attempts) == (a, 0)


def test_state_of_sessions_turns_and_intents(store: Store) -> None:
    outbox = open_outbox(store)
    [a] = _sessions(store, "a")
    assert outbox.state(("missing", "1.0")) is None
    state = outbox.state(a[:2])  # a (custom_id, version) pair: the default project
    assert state is not None and state.platform_id is None and not state.turns and not state.intents
    outbox.save_session(a, "sess_1", "ver_1", "PENDING", "f1")
    outbox.save_intent(a, "t1", {"input": "q"})
    outbox.save_intent(a, "t2", {"input": "r"})
    outbox.save_turn(a, "t1", "inf_1", ["s2", "s1"], "tf1")  # ends t1's intent
    state = outbox.state(a)
    assert state is not None
    assert (state.platform_id, state.version_id, state.status, state.fingerprint) == ("sess_1", "ver_1", "PENDING",
                                                                                      "f1")
    assert {k: (t.platform_id, t.spans_sent, t.fingerprint) for k, t in state.turns.items()} == {
        "t1": ("inf_1", {"s1", "s2"}, "tf1")}
    assert state.intents == {"t2": {"input": "r"}}
    outbox.forget_turn(a, "t1")
    outbox.forget_turn(a, "t2")
    state = outbox.state(a)
    assert state is not None and not state.turns and not state.intents
    assert outbox.overview().synced_sessions == 1


def test_backfill_enqueues_what_was_never_sent_or_changed_since(store: Store) -> None:
    outbox = open_outbox(store)
    _sessions(store, "a", "b")
    assert outbox.backfill(time.time_ns()) == 2
    assert outbox.backfill(time.time_ns()) == 0  # already in the outbox
    for item in outbox.claim(time.time_ns(), 10, SECOND):
        outbox.save_session(item.key, "sess", "ver", "PENDING", None)
        state = outbox.state(item.key)
        assert state is not None
        outbox.complete(item, "done", time.time_ns(), synced_updated_ns=state.session_updated_ns)
    assert outbox.backfill(time.time_ns()) == 0  # sent, unchanged
    _sessions(store, "a")  # a changes (a second trace)
    assert outbox.backfill(time.time_ns()) == 1


def test_concurrent_claimers_never_share_a_row(store: Store) -> None:
    keys = _sessions(store, *(f"c{i}" for i in range(12)))
    now = time.time_ns()
    _enqueue(store, keys, now)
    claimed: list[list[Key]] = []
    start = threading.Barrier(3)

    def claimer() -> None:
        outbox = open_outbox(store)
        start.wait()
        mine: list[Key] = []
        while batch := outbox.claim(now, 2, 60 * SECOND):
            mine += [i.key for i in batch]
        claimed.append(mine)

    threads = [threading.Thread(target=claimer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [k for mine in claimed for k in mine]
    assert sorted(every) == sorted(keys)  # each row claimed once


def test_postgres_claim_skips_a_row_another_claimer_holds(pg_url: Callable[[], str]) -> None:
    """A row locked by another claimer's transaction is skipped, not waited for (nor claimed twice once that
    transaction ends): ``FOR UPDATE SKIP LOCKED``."""
    import psycopg

    store = open_store(pg_url())
    try:
        a, b = _sessions(store, "a", "b")
        now = time.time_ns()
        _enqueue(store, [a, b], now)
        holder = psycopg.connect(store._conninfo)  # type: ignore[attr-defined]
        holder.execute("SELECT 1 FROM galtea_outbox WHERE custom_id = 'a' FOR UPDATE")
        # The holder lets go after a while, so that a claim that waited for the row (no SKIP LOCKED) ends too
        # (and then fails the assertion) rather than hanging the test.
        release = threading.Timer(5.0, holder.rollback)
        release.start()
        try:
            claimed = SqlOutbox(store).claim(now, 10, 60 * SECOND)
        finally:
            release.cancel()
            holder.rollback()
            holder.close()
        assert [i.key for i in claimed] == [b]
        [later] = SqlOutbox(store).claim(now, 10, 60 * SECOND)
        assert later.key == a
    finally:
        store.close()
