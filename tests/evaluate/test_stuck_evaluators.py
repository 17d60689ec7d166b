"""A plain evaluator that passes its timeout keeps its thread (Python cannot stop a thread): the runner records the
timeout at once, leaves the thread behind, counts it, does not start that evaluator again while it is stuck, lets
the other evaluators go on, and stops without waiting for it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galtea_otel import stats
from galtea_otel.evaluate import storage
from galtea_otel.evaluate.evaluators import Evaluator
from galtea_otel.evaluate.runner import EvaluationRunner
from galtea_otel.pipeline import Pipeline, read_session
from galtea_otel.records import SessionDetail
from galtea_otel.store import Store, open_store

from .test_evaluators import _conversation


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'stuck.db'}")
    yield opened
    opened.close()


class Blocking:
    """An evaluator that blocks on an Event until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self.threads: list[threading.Thread] = []
        self.__name__ = "blocking"

    def __call__(self, detail: SessionDetail) -> dict[str, Any]:
        self.calls += 1
        self.threads.append(threading.current_thread())
        self.started.set()
        self.release.wait(120)
        return {"score": 1.0}


def _errors(store: Store, custom_id: str) -> dict[str, tuple[float | None, str | None]]:
    detail = read_session(store, (custom_id, "1"))
    assert detail is not None
    return {e.name: (e.score, e.error) for e in detail.evaluations if not e.superseded}


def test_a_stuck_evaluator_neither_starves_the_others_nor_grows_threads_nor_hangs_stop(store: Store) -> None:
    blocking = Blocking()
    quick_calls: list[str] = []

    def quick(detail: SessionDetail) -> dict[str, Any]:
        quick_calls.append(detail.custom_id)
        return {"score": 0.5}

    before = stats.snapshot()
    # One thread for evaluator calls: the stuck call must give it up for the other evaluator to run at all.
    runner = EvaluationRunner([Evaluator(blocking, timeout_s=0.2), quick], workers=1, max_threads=1,
                              poll_interval_s=0.05)
    pipeline = Pipeline(store, evaluate=True)
    for n in range(3):
        pipeline.ingest(_conversation(f"s{n}", ["x"], start_ns=10**18 + n * 10**11))
    try:
        runner.start(store)
        assert runner.stop(timeout_s=60)  # drained, although the stuck call's thread is still blocked
        assert blocking.threads[0].is_alive() and not blocking.release.is_set()
        assert blocking.threads[0].daemon  # the interpreter's exit does not wait for it either

        assert sorted(quick_calls) == ["s0", "s1", "s2"]  # the others were not starved
        assert blocking.calls == 1  # not started again while stuck: one thread held, not one per session
        assert runner.stuck() == {"blocking": 1} and runner.running == 0
        first = [_errors(store, f"s{n}") for n in range(3)]
        timed_out = [e for e in first if (e["blocking"][1] or "").startswith("TimeoutError")]
        skipped = [e for e in first if "still running past its 0.2 s timeout" in (e["blocking"][1] or "")]
        assert len(timed_out) == 1 and len(skipped) == 2
        assert all(e["quick"] == (0.5, None) for e in first)
        after = stats.snapshot()
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in
                ("evaluators_stuck", "evaluator_timeouts", "evaluator_skipped_stuck", "evaluator_late_returns")}
        assert grew == {"evaluators_stuck": 1, "evaluator_timeouts": 1, "evaluator_skipped_stuck": 2,
                        "evaluator_late_returns": 0}
        assert storage.queue_counts(store) == {"done": 3}
    finally:
        blocking.release.set()
    blocking.threads[0].join(60)
    assert runner.stuck() == {}  # it returned: its late result dropped, the evaluator may run again
    assert stats.snapshot().get("evaluator_late_returns", 0) - before.get("evaluator_late_returns", 0) == 1
    assert all(_errors(store, f"s{n}") == first[n] for n in range(3))  # the late result changed nothing

    pipeline.ingest(_conversation("s3", ["x"], start_ns=10**18 + 5 * 10**11))
    runner.start(store)
    assert runner.stop(timeout_s=60)
    assert blocking.calls == 2
    assert _errors(store, "s3") == {"blocking": (1.0, None), "quick": (0.5, None)}


def test_stop_gives_a_session_back_when_its_evaluator_is_still_running_at_the_deadline(store: Store) -> None:
    """Within its timeout at stop()'s deadline: not a timeout, the session is evaluated again at the next start."""
    blocking = Blocking()
    runner = EvaluationRunner([Evaluator(blocking, timeout_s=120)], poll_interval_s=0.05)
    Pipeline(store, evaluate=True).ingest(_conversation("late", ["x"]))
    try:
        runner.start(store)
        assert blocking.started.wait(60)
        runner.stop(timeout_s=0.2)  # returns although the evaluator is still running (within its 120 s)
        assert blocking.threads[0].is_alive()
        assert storage.queue_counts(store) == {"pending": 1}
        assert _errors(store, "late") == {}
    finally:
        blocking.release.set()
    blocking.threads[0].join(60)
    runner.start(store)
    assert runner.stop(timeout_s=60)
    assert _errors(store, "late") == {"blocking": (1.0, None)}
    assert blocking.calls == 2
