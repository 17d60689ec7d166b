"""The runner: evaluates each session once per end, off the application's threads.

It claims sessions from the store's durable queue (``evaluation_queue``, filled by ``Pipeline(evaluate=True)`` in
the transaction that ends a session), reads each one's full record, runs every evaluator that samples it (each
call on a worker thread, bounded by the evaluator's timeout; an ``async`` one in its own event loop), and stores
the results with the queue row's completion in one transaction. Concurrency is bounded (``workers`` sessions at
a time, as many claimed); the backlog stays in the store, so nothing is lost at a crash and several processes
(the app, receivers) share the queue (a claim is a lease). An evaluator that raises or times out leaves an
evaluation holding its error. ``stop()`` runs what is due until its timeout.

Timeouts: an ``async`` evaluator is cancelled at its timeout. A plain one cannot be (Python cannot kill a thread):
its evaluation is recorded with a ``TimeoutError`` at once and its thread is left behind, *stuck* (counted in
``galtea_otel.stats()["evaluators_stuck"]``, logged, listed by :meth:`EvaluationRunner.stuck`); it no longer
counts against ``max_threads``, and the evaluator is not started again while it has ``stuck_limit`` calls stuck
(those sessions get an error evaluation saying so), so a hung evaluator neither starves the others nor grows
threads without bound. Evaluator threads are daemons: neither ``stop()`` nor the interpreter's exit waits for a
stuck one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from galtea_otel.evaluate import storage
from galtea_otel.evaluate.evaluators import Evaluator, coerce, failure, utcnow
from galtea_otel.records import Evaluation, SessionDetail
from galtea_otel.stats import incr, internal_error

log = logging.getLogger("galtea_otel")
ASYNC_GRACE_S = 0.5


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


class _Call:
    """One evaluator call on a daemon thread of its own (never joined at exit: a stuck one cannot hang it)."""

    def __init__(self, evaluator: Evaluator, detail: SessionDetail, on_return: Any) -> None:
        self.evaluator = evaluator
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.abandoned = False  # timed out (or given up at shutdown): its result, if it ever comes, is dropped
        self._on_return = on_return
        self._thread = threading.Thread(target=self._run, args=(detail,), daemon=True,
                                        name=f"galtea-otel-evaluator-{evaluator.name}"[:60])
        self._thread.start()

    def _run(self, detail: SessionDetail) -> None:
        try:
            self.value = _call(self.evaluator, detail)
        except BaseException as exc:  # reported as the evaluation's error (or re-raised by the collector)
            self.error = exc
        finally:
            self.done.set()
            self._on_return(self)


class _Interrupted(Exception):
    """The runner is stopping and its deadline passed while an evaluator was still running."""


class EvaluationRunner:
    """Runs the evaluators of the sessions that ended (see the module's docstring).

    Threads: ``workers`` sessions at a time; each evaluator call runs on a daemon thread of its own, at most
    ``max_threads`` (default ``2 x workers``) running at once. A plain (non-``async``) evaluator that passes its
    timeout cannot be stopped (Python cannot kill a thread): its evaluation is recorded with a ``TimeoutError``
    at once, its thread is *left stuck*: it no longer counts as running (the others go on), it is counted
    (``evaluators_stuck`` in ``galtea_otel.stats()``, :meth:`stuck`) and logged, and its late result, if it
    ever returns, is dropped (``evaluator_late_returns``). While an evaluator has ``stuck_limit`` calls stuck, it
    is not started again: its evaluations are recorded with an error saying so (``evaluator_skipped_stuck``),
    so one evaluator that hangs forever holds at most ``stuck_limit`` threads per concurrent session instead of
    one more per session. The threads are daemons, never joined: :meth:`stop` and the interpreter's exit do not
    wait for a stuck one.
    """

    def __init__(self, evaluators: Iterable[Any], *, workers: int = 2, poll_interval_s: float = 0.5,
                 lease_s: float = 300.0, shutdown_timeout_s: float = 3.0, max_threads: int | None = None,
                 stuck_limit: int = 1) -> None:
        self.evaluators = [Evaluator.of(e) for e in evaluators]
        names = [e.name for e in self.evaluators]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluator names must be unique: {names}")
        if workers < 1:
            raise ValueError("workers must be >= 1")
        if max_threads is not None and max_threads < 1:
            raise ValueError("max_threads must be >= 1")
        if stuck_limit < 1:
            raise ValueError("stuck_limit must be >= 1")
        self.workers = workers
        self.max_threads = max_threads if max_threads is not None else 2 * workers
        self.stuck_limit = stuck_limit
        self.poll_interval_s = poll_interval_s
        self.lease_ns = int(lease_s * 1e9)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.store: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._slots = threading.Condition()
        self._running = 0
        self._stuck: Counter[str] = Counter()
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
        self._thread = threading.Thread(target=self._loop, name="galtea-otel-evaluations", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Run what is due for at most ``timeout_s`` (default ``shutdown_timeout_s``), then stop. True when the
        queue was drained in time. A session whose evaluators are still running at the deadline is given back to
        the queue (evaluated again at the next start); a stuck evaluator thread is left behind, never waited for."""
        thread = self._thread
        if thread is None:
            return True
        wait = self.shutdown_timeout_s if timeout_s is None else timeout_s
        with self._slots:
            self._deadline = time.monotonic() + wait
            self._stop.set()
            self._slots.notify_all()
        self._wake.set()
        thread.join(wait + 0.5)
        self._thread = None
        return not thread.is_alive()

    def stuck(self) -> dict[str, int]:
        """Evaluator name -> calls still running past their timeout (their threads are left behind)."""
        with self._slots:
            return {name: n for name, n in self._stuck.items() if n}

    @property
    def running(self) -> int:
        """Evaluator calls running now (not counting stuck ones)."""
        with self._slots:
            return self._running

    # --- the loop -----------------------------------------------------------------------------------------------

    def _loop(self) -> None:
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
            # Daemon threads, not a pool: at exit nothing joins them (each is bounded by its evaluators' timeouts).
            threads = [threading.Thread(target=self._evaluate, args=(item,), daemon=True,
                                        name="galtea-otel-evaluate") for item in items]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def _evaluate(self, item: storage.QueueItem) -> None:
        try:
            from galtea_otel.pipeline import read_session

            detail = read_session(self.store, item.key)
            results: list[Evaluation] = []
            ran: list[str] = []
            if detail is not None and detail.status in ("COMPLETED", "FAILED"):
                chosen = [e for e in self.evaluators if e.chosen(item.key)]
                try:
                    pending: list[tuple[Evaluator, _Call | int]] = []
                    for evaluator in chosen:
                        # No thread free: collect this session's oldest call first (it ends or times out), so
                        # that calls of one session never wait for a thread that only they could free.
                        while (call := self._start(evaluator, detail, wait=not pending)) is None:
                            done, first = pending.pop(0)
                            results += self._collect(done, first, detail, item.end_ns)
                            ran.append(done.name)
                        pending.append((evaluator, call))
                    for evaluator, call in pending:
                        results += self._collect(evaluator, call, detail, item.end_ns)
                        ran.append(evaluator.name)
                except _Interrupted:
                    storage.release(self.store, item, time.time_ns())  # evaluated again at the next start
                    return
            storage.complete(self.store, item, results, item.end_ns, ran)
            self.sessions_evaluated += 1
            incr("sessions_evaluated")
        except Exception as exc:  # the row stays claimed until its lease runs out, then runs again
            internal_error("evaluations.run", exc)

    def _interrupted(self) -> bool:
        return self._stop.is_set() and time.monotonic() >= self._deadline

    def _start(self, evaluator: Evaluator, detail: SessionDetail, wait: bool) -> _Call | int | None:
        """A running call, or the number of this evaluator's stuck calls when it is not started because of them;
        None when no thread is free and not ``wait``. With ``wait``, waits for a free thread (the calls of other
        sessions end or time out within their timeouts)."""
        with self._slots:
            while True:
                stuck = self._stuck[evaluator.name]
                if stuck >= self.stuck_limit:
                    return stuck
                if self._running < self.max_threads:
                    break
                if not wait:
                    return None
                if self._interrupted():
                    raise _Interrupted
                step = self._deadline - time.monotonic() if self._stop.is_set() else self.poll_interval_s
                self._slots.wait(max(min(step, self.poll_interval_s), 0.01))
            self._running += 1
        try:
            return _Call(evaluator, detail, self._returned)
        except BaseException:
            with self._slots:
                self._running -= 1
                self._slots.notify_all()
            raise

    def _returned(self, call: _Call) -> None:
        """On the call's own thread, when the evaluator returned (or raised)."""
        with self._slots:
            if call.abandoned:
                self._stuck[call.evaluator.name] -= 1
                late = True
            else:
                self._running -= 1
                late = False
            self._slots.notify_all()
        if late:
            incr("evaluator_late_returns")
            log.info("galtea-otel: evaluator %r returned %.1f s after it started, past its %g s timeout; its result"
                     " was dropped", call.evaluator.name, time.monotonic() - call.started, call.evaluator.timeout_s)

    def _abandon(self, call: _Call) -> bool:
        """Leave a call that is still running behind; False when it returned meanwhile."""
        with self._slots:
            if call.done.is_set():
                return False
            call.abandoned = True
            self._running -= 1
            self._stuck[call.evaluator.name] += 1
            stuck = self._stuck[call.evaluator.name]
            self._slots.notify_all()
        incr("evaluators_stuck")
        log.warning("galtea-otel: evaluator %r is still running after its %g s timeout; its thread is left behind"
                    " (Python cannot stop a thread; %d call(s) of it stuck; it is not started again while %d are)",
                    call.evaluator.name, call.evaluator.timeout_s, stuck, self.stuck_limit)
        return True

    def _collect(self, evaluator: Evaluator, call: _Call | int, detail: SessionDetail,
                 end_ns: int) -> Sequence[Evaluation]:
        if isinstance(call, int):
            incr("evaluator_skipped_stuck")
            return [failure(evaluator, detail, end_ns,
                            f"RuntimeError: not run: {call} earlier call(s) of this evaluator still running past its"
                            f" {evaluator.timeout_s:g} s timeout", utcnow())]
        # An async evaluator times itself out (asyncio.wait_for) on its thread: a moment of grace for that.
        limit = call.started + evaluator.timeout_s + (ASYNC_GRACE_S if inspect.iscoroutinefunction(evaluator.fn)
                                                      else 0.0)
        while not call.done.is_set():
            until = min(limit, self._deadline) if self._stop.is_set() else limit
            # In steps: a stop() that comes meanwhile moves the deadline.
            if call.done.wait(max(min(until - time.monotonic(), self.poll_interval_s), 0.0)):
                break
            if time.monotonic() >= limit:
                if self._abandon(call):
                    incr("evaluator_timeouts")
                    return [failure(evaluator, detail, end_ns,
                                    f"TimeoutError: no result within {evaluator.timeout_s:g} s", utcnow())]
            elif self._interrupted() and self._abandon(call):
                raise _Interrupted
        if isinstance(call.error, (asyncio.TimeoutError, FutureTimeout)):
            incr("evaluator_timeouts")
            return [failure(evaluator, detail, end_ns, f"TimeoutError: no result within {evaluator.timeout_s:g} s",
                            utcnow())]
        if call.error is not None:
            if not isinstance(call.error, Exception):
                raise call.error
            incr("evaluator_errors")
            return [failure(evaluator, detail, end_ns, f"{type(call.error).__name__}: {call.error}"[:1000],
                            utcnow())]
        try:
            return coerce(call.value, evaluator, detail, end_ns, utcnow())
        except Exception as exc:
            incr("evaluator_errors")
            return [failure(evaluator, detail, end_ns, f"{type(exc).__name__}: {exc}"[:1000], utcnow())]
