"""Drain the store's Galtea outbox: continuously (:class:`SyncWorker`, a daemon thread) or once (:func:`sync_once`).

Both claim due outbox rows in batches (``GalteaSyncConfig.batch_size`` sessions) and reconcile each session with
:class:`galtea_otel.sync.sink.GalteaSink`. A transient failure (connection, timeout, 429, 5xx) defers that session
with exponential backoff (``Retry-After`` wins) and pauses the batch; a refusal (4xx) parks the session with the
platform's error and the batch goes on; a rejected API key (401 / 403) stops everything until it is fixed.
Nothing here runs on the application's thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from galtea_otel.store.base import Store
from galtea_otel.sync.client import AuthFailed, GalteaHttp, Refused, Retryable
from galtea_otel.sync.config import GalteaSyncConfig
from galtea_otel.sync.outbox import open_outbox
from galtea_otel.sync.schema import OutboxItem
from galtea_otel.sync.sink import GalteaSink, Outcome

log = logging.getLogger("galtea_otel.sync")
AUTH_RETRY_S = 60.0


@dataclass
class SyncSummary:
    """What a sync did, by session: ``sent`` (something was sent), ``already_there`` (nothing needed sending),
    ``refused`` (parked in this run), ``pending`` (still in the outbox at the end), plus entity totals."""

    sent: int = 0
    already_there: int = 0
    refused: int = 0
    pending: int = 0
    parked: int = 0
    backfilled: int = 0
    totals: Outcome = field(default_factory=Outcome)
    refusals: list[str] = field(default_factory=list)
    last_error: str | None = None

    @property
    def finished(self) -> int:
        return self.sent + self.already_there + self.refused


@dataclass
class BatchResult:
    claimed: int = 0
    finished: int = 0
    pause_s: float = 0.0


class SyncRunner:
    """One sender: an HTTP client and a sink over a store. Not thread-safe; one per worker thread."""

    def __init__(self, store: Store, config: GalteaSyncConfig, *, stop: threading.Event | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.store = store
        self.outbox = open_outbox(store)
        self.config = config
        self.stop = stop or threading.Event()
        self.http = GalteaHttp(config, self.stop, transport=transport)
        self.sink = GalteaSink(store, config, self.http, self.outbox)
        self.summary = SyncSummary()

    def close(self) -> None:
        self.http.close()

    def backfill(self) -> int:
        """Enqueue the sessions never sent or changed since, and the synced ones whose evaluations are not all
        settled on the platform (recorded while no sync was running)."""
        from galtea_otel.sync.evaluations import backfill as backfill_evaluations

        count = self.outbox.backfill(time.time_ns())
        count += backfill_evaluations(self.store, time.time_ns())
        self.summary.backfilled += count
        return count

    def _backoff(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(float(retry_after), self.config.max_retry_after_s)
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0 ** max(attempts - 1, 0))
        return delay * random.uniform(0.5, 1.0)

    def run_batch(self, on_finished: Callable[[int], None] | None = None) -> BatchResult:
        now = time.time_ns()
        items = self.outbox.claim(now, self.config.batch_size, int(self.config.lease_s * 1e9))
        result = BatchResult(claimed=len(items))
        for index, item in enumerate(items):
            if self.stop.is_set():
                self._release(items[index:], 0.0)
                break
            try:
                pause = self._one(item)
            except AuthFailed:
                self._release(items[index:], AUTH_RETRY_S)
                raise
            if pause is None:
                result.finished += 1
                if on_finished is not None:
                    on_finished(1)
            else:
                # A transient failure is most likely the platform's or the network's, not this session's: the
                # rest of the batch waits as long, instead of hammering it.
                self._release(items[index + 1:], pause)
                result.pause_s = pause
                break
        return result

    def _release(self, items: list[OutboxItem], delay_s: float) -> None:
        now = time.time_ns()
        for item in items:
            self.outbox.complete(item, "release", now, next_attempt_ns=now + int(delay_s * 1e9))

    def _one(self, item: OutboxItem) -> float | None:
        """Reconcile one session; None when its row is finished (done or parked), else the pause to take."""
        summary = self.summary
        try:
            outcome, updated_ns = self.sink.sync_session(item.key)
        except Retryable as exc:
            delay = self._backoff(item.attempts + 1, exc.retry_after)
            summary.last_error = str(exc)
            log.warning("galtea sync: session %r (version %r) deferred %.1f s: %s", item.key[0], item.key[1],
                        delay, exc)
            now = time.time_ns()
            self.outbox.complete(item, "defer", now, next_attempt_ns=now + int(delay * 1e9), error=str(exc))
            return delay
        except Refused as exc:
            self._park(item, str(exc), None)
            return None
        except AuthFailed:
            raise
        except Exception as exc:  # a bug or a store failure: keep the row, retry later, say why
            delay = self._backoff(item.attempts + 1, None)
            summary.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("galtea sync: session %r (version %r) failed; retrying in %.1f s", item.key[0],
                          item.key[1], delay)
            now = time.time_ns()
            self.outbox.complete(item, "defer", now, next_attempt_ns=now + int(delay * 1e9),
                                     error=summary.last_error)
            return delay
        summary.totals.add(outcome)
        refusals = []
        if outcome.rejected_spans:
            refusals.append(f"the platform refused {len(outcome.rejected_spans)} span(s): "
                            + "; ".join(outcome.rejected_spans[:5]))
        if outcome.rejected_evaluations:
            refusals.append(f"the platform refused {len(outcome.rejected_evaluations)} evaluation(s): "
                            + "; ".join(outcome.rejected_evaluations[:5]))
        if refusals:
            self._park(item, "; ".join(refusals), updated_ns)
            return None
        if outcome.already_there:
            summary.already_there += 1
        else:
            summary.sent += 1
        self.outbox.complete(item, "done", time.time_ns(), synced_updated_ns=updated_ns)
        return None

    def _park(self, item: OutboxItem, message: str, updated_ns: int | None) -> None:
        self.summary.refused += 1
        self.summary.refusals.append(f"{item.key[0]} ({item.key[1]}): {message}")
        log.warning("galtea sync: session %r (version %r) refused, parked: %s", item.key[0], item.key[1], message)
        self.outbox.complete(item, "park", time.time_ns(), error=message, synced_updated_ns=updated_ns)


def sync_once(
    store: Store,
    config: GalteaSyncConfig,
    *,
    timeout_s: float = 300.0,
    retry_parked: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_finished: Callable[[int], None] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> SyncSummary:
    """Send everything the outbox holds (after enqueuing what was never sent: ``config.backfill``), retrying
    transient failures until it is empty of due work or ``timeout_s`` ran out. Raises ``AuthFailed``."""
    runner = SyncRunner(store, config, transport=transport)
    deadline = time.monotonic() + timeout_s
    try:
        if retry_parked:
            runner.outbox.requeue_parked(time.time_ns())
        if config.backfill:
            runner.backfill()
        if on_start is not None:
            on_start(runner.outbox.overview(0).pending)
        while True:
            result = runner.run_batch(on_finished)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if result.pause_s:
                time.sleep(min(result.pause_s, left))
            elif result.claimed == 0:
                if runner.outbox.overview(0).pending == 0:
                    break
                time.sleep(min(0.2, left))  # rows deferred or leased by another worker: wait for them
        overview = runner.outbox.overview(0)
        runner.summary.pending = overview.pending
        runner.summary.parked = overview.parked
        return runner.summary
    finally:
        runner.close()


class SyncWorker(threading.Thread):
    """The continuous sender: a daemon thread draining the outbox of ``store`` (used by
    ``configure(galtea=...)`` and ``galtea-otel serve --galtea-sync``)."""

    def __init__(self, store: Store, config: GalteaSyncConfig, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name="galtea-otel-sync", daemon=True)
        self.store = store
        self.config = config
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._transport = transport
        self.runner: SyncRunner | None = None

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def run(self) -> None:
        runner = SyncRunner(self.store, self.config, stop=self._stop_event, transport=self._transport)
        self.runner = runner
        auth_reported = False
        try:
            if self.config.backfill:
                try:
                    runner.backfill()
                except Exception:
                    log.exception("galtea sync: could not enqueue the sessions not sent yet")
            while not self._stop_event.is_set():
                try:
                    result = runner.run_batch()
                    auth_reported = False
                except AuthFailed as exc:
                    if not auth_reported:
                        log.error("galtea sync stopped until the API key is fixed: %s", exc)
                        auth_reported = True
                    self._wait(AUTH_RETRY_S)
                    continue
                except Exception:
                    log.exception("galtea sync: the outbox could not be read; retrying")
                    self._wait(min(30.0, self.config.backoff_max_s))
                    continue
                if result.pause_s:
                    self._stop_event.wait(result.pause_s)
                elif result.claimed < self.config.batch_size:
                    self._wait(self.config.poll_interval_s)
        finally:
            runner.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the request under way (rows not tried are released for the next run)."""
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout_s)
