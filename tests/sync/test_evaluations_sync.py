"""Evaluations to the Galtea platform with their sessions, exactly once (issue 11): against the local stand-in of
the platform (tests/fakes/galtea_api.py), whose request bodies must be the SDK's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.evaluate.evaluators import Evaluator
from galtea_otel.evaluate.runner import EvaluationRunner
from galtea_otel.evaluate.storage import _Db
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SessionDetail
from galtea_otel.store import Store, open_store
from galtea_otel.sync.outbox import open_outbox
from galtea_otel.sync.worker import sync_once
from tests.evaluate.test_evaluators import _conversation
from tests.fakes.galtea_api import FakeGaltea
from tests.sync.conftest import GALTEA_OTEL, PRODUCT, assert_delivered_exactly_once, sync_config

Fake = tuple[FakeGaltea, str]


def _annotate(store: Store, *args: str) -> None:
    env = {**os.environ, "GALTEA_OTEL_STORE": store.url}
    done = subprocess.run([*GALTEA_OTEL, "annotate", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _states(store: Store) -> dict[str, int]:
    rows = _Db(store).read("SELECT state, count(*) FROM galtea_sync_evaluations GROUP BY state")
    return {state: int(n) for state, n in rows}


def test_human_annotations_recorded_after_the_session_was_synced_are_sent_later(fake: Fake,
                                                                               demo_store: Store) -> None:
    api, url = fake
    first = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert first.totals.evaluations_created > 0  # the demo's own evaluations (app, evaluators)
    assert_delivered_exactly_once(api, demo_store)
    before = len(api.evaluations)
    [summary] = [s for s in demo_store.list_sessions(limit=10) if s.status == "COMPLETED"][:1]
    assert open_outbox(demo_store).overview().pending == 0

    # People score the session and one of its turns (and give a label, which the platform cannot hold).
    _annotate(demo_store, summary.custom_id, "--name", "helpful", "--score", "0.8", "--note", "clear answers")
    _annotate(demo_store, summary.custom_id, "--turn", "0", "--name", "accurate", "--score", "1")
    _annotate(demo_store, summary.custom_id, "--name", "tone", "--label", "friendly")
    assert open_outbox(demo_store).overview().pending == 1  # back in the outbox, with the annotations' transaction

    later = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert (later.sent, later.pending, later.refused) == (1, 0, 0)
    assert (later.totals.evaluations_created, later.totals.evaluations_skipped) == (2, 1)
    assert later.totals.turns_created == later.totals.sessions_created == 0
    assert len(api.evaluations) == before + 2
    assert_delivered_exactly_once(api, demo_store)
    [remote] = api.session_by_custom_id(summary.custom_id)
    [first_turn, *_] = api.turns_of(remote["id"])
    held = {(e["metric"], e["inferenceResultId"], e["score"]) for e in api.evaluations_of(remote["id"])}
    assert {("helpful", None, 0.8), ("accurate", first_turn["id"], 1.0)} <= held
    assert {m["name"]: m["source"] for m in api.metrics.values()}["helpful"] == "SELF_HOSTED"

    again = sync_once(demo_store, sync_config(url), timeout_s=30)  # nothing left: nothing sent twice
    assert (again.sent, again.totals.evaluations_created) == (0, 0)
    assert len(api.evaluations) == before + 2


@pytest.mark.parametrize("faults", [
    [("POST", "evaluations/", "status", {"status": 500, "times": 3})],
    [("POST", "evaluations/", "status", {"status": 503, "times": 1}),
     ("POST", "metrics", "status", {"status": 502, "times": 1})],
    [("POST", "evaluations/", "hang", {"times": 3})],  # created, but the answer comes after the client gave up
    [("POST", "evaluations/", "drop", {"times": 3})],  # created, then the connection drops
    [("POST", "evaluations/", "drop_before", {"times": 2})],
    [("POST", "metrics", "drop", {"times": 1})],  # the metric was created: found by name, not created twice
    [("GET", "evaluations", "status", {"status": 500, "times": 2}),
     ("POST", "evaluations/", "hang", {"times": 1})],
])
def test_retries_after_failures_do_not_duplicate(fake: Fake, demo_store: Store,
                                                 faults: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    api, url = fake
    injected = [api.fail(method, path, mode, hang_s=1.0, **options) for method, path, mode, options in faults]
    summary = sync_once(demo_store, sync_config(url), timeout_s=60)
    assert [f.times for f in injected] == [0] * len(injected), "a fault was never hit"
    assert (summary.refused, summary.pending) == (0, 0), summary
    assert_delivered_exactly_once(api, demo_store)
    names = [m["name"] for m in api.metrics.values()]
    assert len(names) == len(set(names))
    # Every creation reached the platform once: a creation whose answer was lost was adopted, not sent again.
    created = [r for r in api.requests if r[0] == "POST" and r[1].startswith("evaluations/") and r[2] == 200]
    assert len(created) == len(api.evaluations)
    assert _states(demo_store) == {"sent": len(api.evaluations)}


def test_a_superseded_evaluation_is_deleted_from_the_platform_and_its_successor_sent(fake: Fake,
                                                                                   tmp_path: Path) -> None:
    api, url = fake
    api.add_version(PRODUCT, "1")
    store = open_store(f"sqlite:///{tmp_path / 'reopened.db'}")

    def turns(detail: SessionDetail) -> dict[str, Any]:
        return {"score": 1.0 / len(detail.inference_results)}

    runner = EvaluationRunner([Evaluator(turns, name="per_turn")])
    pipeline = Pipeline(store, evaluate=True, sync=True)
    pipeline.ingest(_conversation("r1", ["a"]))
    runner.start(store)
    assert runner.stop(timeout_s=60)
    sync_once(store, sync_config(url), timeout_s=30)
    [remote] = api.session_by_custom_id("r1")
    assert [(e["metric"], e["score"]) for e in api.evaluations_of(remote["id"])] == [("per_turn", 1.0)]

    # A late turn reopens the session; it ends again; the evaluator runs again: the first result is superseded.
    pipeline.ingest(_conversation("r1", ["b"], start_ns=10**18 + 10 * 10**9))
    runner.start(store)
    assert runner.stop(timeout_s=60)
    detail = read_session(store, ("r1", "1"))
    assert detail is not None and sorted((e.score, e.superseded) for e in detail.evaluations) == [
        (0.5, False), (1.0, True)]
    summary = sync_once(store, sync_config(url), timeout_s=30)
    assert (summary.totals.evaluations_created, summary.totals.evaluations_deleted) == (1, 1)
    assert [(e["metric"], e["score"]) for e in api.evaluations_of(remote["id"])] == [("per_turn", 0.5)]
    assert [e["score"] for e in api.deleted_evaluations] == [1.0]
    assert_delivered_exactly_once(api, store)
    assert _states(store) == {"sent": 1, "deleted": 1}
    store.close()


def test_evaluations_of_a_session_synced_before_are_found_by_the_backfill(fake: Fake, demo_store: Store) -> None:
    """Evaluations written while no sync knew the session (a store synced by a galtea-otel that sent none): the
    backfill enqueues the synced sessions whose evaluations are not settled."""
    api, url = fake
    sync_once(demo_store, sync_config(url), timeout_s=30)
    sent = len(api.evaluations)
    with _Db(demo_store).write() as cur:  # as if none had been sent: the platform's copies go too
        cur.execute("DELETE FROM galtea_sync_evaluations")
    api.evaluations.clear()
    assert open_outbox(demo_store).overview().pending == 0
    summary = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert summary.backfilled >= 1 and summary.totals.evaluations_created == sent
    assert_delivered_exactly_once(api, demo_store)


def test_an_evaluation_the_platform_refuses_parks_the_session_with_the_reason(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    api.fail("POST", "evaluations/fromSession", "status", status=400, message="metric is archived", times=1)
    summary = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert summary.refused == 1
    assert any("metric is archived" in r for r in summary.refusals)
    assert _states(demo_store).get("refused") == 1
    again = sync_once(demo_store, sync_config(url), timeout_s=30, retry_parked=True)
    assert again.totals.evaluations_created == 0  # a refused evaluation is not sent again


def test_a_store_without_the_evaluation_sync_table_gets_it_when_opened(fake: Fake, demo_store_url: str) -> None:
    """A store written before evaluations were synced (no ``galtea_sync_evaluations``) opens, gains the table in
    place (idempotent: CREATE ... IF NOT EXISTS), and syncs its evaluations."""
    api, url = fake
    store = open_store(demo_store_url)
    with _Db(store).write() as cur:
        cur.execute("DROP TABLE galtea_sync_evaluations")
    store.close()
    for _ in range(2):  # opened twice: the second open changes nothing
        store = open_store(demo_store_url)
        store.close()
    store = open_store(demo_store_url)
    try:
        summary = sync_once(store, sync_config(url), timeout_s=30)
        assert summary.totals.evaluations_created == len(api.evaluations) > 0
        assert_delivered_exactly_once(api, store)
    finally:
        store.close()
