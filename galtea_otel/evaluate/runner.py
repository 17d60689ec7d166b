"""The runner: evaluates each session once per end, off the application's threads.

It claims sessions from the store's durable queue (``evaluation_queue``, filled by ``Pipeline(evaluate=True)`` in
the transaction that ends a session), reads each one's full record, runs every evaluator that samples it (each
call on a worker thread, bounded by the evaluator's timeout; an ``async`` one in its own event loop), and stores
the results with the queue row's completion in one transaction. Concurrency is bounded (``workers`` sessions at
a time, as many claimed); the backlog stays in the store, so nothing is lost at a crash and several processes
(the app, receivers) share the queue (a claim is a lease). An evaluator that raises or times out leaves an
evaluation holding its error. ``stop()`` runs what is due until its timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from galtea_otel.evaluate import storage
from galtea_otel.evaluate.evaluators import Evaluator, coerce, failure, utcnow
from galtea_otel.records import Evaluation, SessionDetail
from galtea_otel.stats import incr, internal_error

log = logging.getLogger("galtea_otel")


def load_evaluators(specs: Iterable[str]) -> list[Any]:
    """``module:attr`` -> the callable, ``Evaluator`` or list of them it names (``galtea-otel serve --evaluators``)."""
    import importlib

    found: list[Any] = []
    for spec in specs:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"{spec!r}: expected MODULE:ATTR (e.g. myapp.evals:EVALUATORS)")
        value: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            value = getattr(value, part)
        found += list(value) if isinstance(value, (list, tuple)) else [value]
    return found


def _call(evaluator: Evaluator, detail: SessionDetail) -> Any:
    result = evaluator.fn(detail)
    if inspect.isawaitable(result):
        async def bounded() -> Any:
            return await asyncio.wait_for(result, evaluator.timeout_s)
        return asyncio.run(bounded())
    return result


class EvaluationRunner:
    def __init__(self, evaluators: Iterable[Any], *, workers: int = 2, poll_interval_s: float = 0.5,
                 lease_s: float = 300.0, shutdown_timeout_s: float = 3.0) -> None:
        self.evaluators = [Evaluator.of(e) for e in evaluators]
        names = [e.name for e in self.evaluators]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluator names must be unique: {names}")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.poll_interval_s = poll_interval_s
        self.lease_ns = int(lease_s * 1e9)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.store: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._calls: ThreadPoolExecutor | None = None
        self.sessions_evaluated = 0

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def attach(self, pipeline: Any) -> None:
        """Queue the sessions this pipeline ends, and evaluate them on its store (a new thread after a fork)."""
        pipeline.evaluate = True
        self.start(pipeline.store)

    def start(self, store: Any) -> None:
        if self._thread is not None and self._thread.is_alive() and store is self.store:
            return
        self.store = store
        self._stop.clear()
        self._calls = ThreadPoolExecutor(max_workers=self.workers * 2, thread_name_prefix="galtea-otel-evaluator")
        self._thread = threading.Thread(target=self._loop, name="galtea-otel-evaluations", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Run what is due for at most ``timeout_s`` (default ``shutdown_timeout_s``), then stop. True when the
        queue was drained in time."""
        thread = self._thread
        if thread is None:
            return True
        wait = self.shutdown_timeout_s if timeout_s is None else timeout_s
        self._deadline = time.monotonic() + wait
        self._stop.set()
        self._wake.set()
        thread.join(wait + 0.5)
        if self._calls is not None:
            self._calls.shutdown(wait=False, cancel_futures=True)
        self._thread = None
        return not thread.is_alive()

    # --- the loop -----------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="galtea-otel-evaluate") as sessions:
            while True:
                stopping = self._stop.is_set()
                if stopping and time.monotonic() >= self._deadline:
                    return
                try:
                    items = storage.claim(self.store, time.time_ns(), self.workers, self.lease_ns)
                except Exception as exc:
                    internal_error("evaluations.claim", exc)
                    items = []
                if not items:
                    if stopping:
                        return
                    self._wake.wait(self.poll_interval_s)
                    self._wake.clear()
                    continue
                for future in [sessions.submit(self._evaluate, item) for item in items]:
                    future.result()

    def _evaluate(self, item: storage.QueueItem) -> None:
        try:
            from galtea_otel.pipeline import read_session

            detail = read_session(self.store, item.key)
            results: list[Evaluation] = []
            ran: list[str] = []
            if detail is not None and detail.status in ("COMPLETED", "FAILED"):
                chosen = [e for e in self.evaluators if e.chosen(item.key)]
                calls = [(e, self._submit(e, detail)) for e in chosen]
                for evaluator, future in calls:
                    results += self._collect(evaluator, future, detail, item.end_ns)
                    ran.append(evaluator.name)
            storage.complete(self.store, item, results, item.end_ns, ran)
            self.sessions_evaluated += 1
            incr("sessions_evaluated")
        except Exception as exc:  # the row stays claimed until its lease runs out, then runs again
            internal_error("evaluations.run", exc)

    def _submit(self, evaluator: Evaluator, detail: SessionDetail) -> Future[Any]:
        assert self._calls is not None
        return self._calls.submit(_call, evaluator, detail)

    def _collect(self, evaluator: Evaluator, future: Future[Any], detail: SessionDetail,
                 end_ns: int) -> Sequence[Evaluation]:
        try:
            value = future.result(timeout=evaluator.timeout_s)
            return coerce(value, evaluator, detail, end_ns, utcnow())
        except (FutureTimeout, asyncio.TimeoutError):
            future.cancel()
            incr("evaluator_timeouts")
            return [failure(evaluator, detail, end_ns, f"TimeoutError: no result within {evaluator.timeout_s:g} s",
                            utcnow())]
        except Exception as exc:
            incr("evaluator_errors")
            return [failure(evaluator, detail, end_ns, f"{type(exc).__name__}: {exc}"[:1000], utcnow())]
