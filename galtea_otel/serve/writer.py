"""Group commit: one writer at a time stores the rows of every request waiting at that moment in one transaction.

Without it, each request ran ``Pipeline.ingest`` (translate + assemble + one transaction + commit) in its own
thread, so concurrent requests queued on the store's single writer, each paying its own transaction: 4 clients
were no faster than 1. Here a request's thread does the part no store is needed for (decompress, decode,
``Pipeline.translate_spans``), then queues its rows. The writer takes every request queued (up to ``max_spans``
spans and ``max_bytes`` bytes of row text, at least one request), stores their rows with one
``Pipeline.ingest_rows`` (one transaction), and only after the commit wakes each request, which answers with its
own outcome (its own rejected spans, counted when it translated them). If that transaction fails, nothing of it
is stored (each request is then tried alone, below); a request not stored fails with :class:`StoreUnavailable`
(its client retries): nothing acknowledged is lost, nothing lost is acknowledged. Records are a function of the
set of spans, so storing several requests' rows at once gives the records storing them one by one would.

The writer is a request's own thread, not a thread of its own: a request that finds nobody writing stores the
group (its own request first), then hands the role to the oldest request still queued, whose thread stores the
next group. So a lone client's request is translated and stored by one thread, as before, with no hand-over
between threads; under concurrency, exactly one thread writes at a time.

Nothing waits to make a group: a request arriving while the writer is idle is stored at once, alone; the requests
that arrive while a transaction runs form the next group. Memory stays bounded: a request holds its ingest slot
(``max_inflight``, per protocol) until it is answered, so at most the slot holders' rows are queued, and a group
is further cut at ``max_spans`` / ``max_bytes``.

When a group's transaction fails, each of its requests is stored again in a transaction of its own (rows as
translated), so that one request whose rows the store refuses fails alone instead of taking every request
grouped with it down each time it is retried; after two failures in a row the rest are answered at once (the
store itself is failing). Only a request not stored is answered with an error.

``stats`` counts ``requests`` and ``spans`` stored, ``commits`` (transactions committed), ``failed``
(transactions that failed), ``failed_requests`` (requests answered with an error), ``stored_alone``
(requests stored alone after their group failed), and keeps ``largest_group`` (requests in the largest group
committed).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from galtea_otel.pipeline import IngestResult
from galtea_otel.serve.options import DEFAULT_GROUP_BYTES, DEFAULT_GROUP_SPANS
from galtea_otel.spandata import SpanData
from galtea_otel.translate.row import DEFAULT_PROJECT, SpanRow

log = logging.getLogger("galtea_otel.serve")

_ROW_BYTES = 256  # a row's ids, times and numbers, roughly, on top of its texts
_TEXTS = ("name", "input", "output", "metadata", "input_messages", "output_messages", "context", "evaluations")


class GroupWriting(Protocol):
    """What the writer needs of a pipeline: both halves of :meth:`galtea_otel.pipeline.Pipeline.ingest`."""

    def translate_spans(self, spans: Iterable[SpanData], project: str = ...,
                        result: IngestResult | None = ...) -> list[SpanRow]: ...

    def ingest_rows(self, translated: Sequence[SpanRow], result: IngestResult | None = ...) -> IngestResult: ...


class StoreUnavailable(Exception):
    """The transaction that held this request's rows failed (rolled back): nothing of the request is stored."""


@dataclass(eq=False)
class _Waiting:
    rows: list[SpanRow]
    size: int
    wake: threading.Event = field(default_factory=threading.Event)  # set once stored, or when made the writer
    done: bool = False
    lead: bool = False  # this request's thread is the writer now
    error: BaseException | None = None


def row_bytes(rows: Sequence[SpanRow]) -> int:
    """About how many bytes these rows hold: their texts' lengths plus a fixed part each (cheap: no encoding)."""
    total = _ROW_BYTES * len(rows)
    for row in rows:
        for name in _TEXTS:
            text = getattr(row, name)
            if text:
                total += len(text)
    return total


class GroupCommitter:
    """An ``Ingests`` (``ingest(spans, project)``) that stores concurrent requests with one transaction per group;
    shared by the OTLP/HTTP and OTLP/gRPC front ends. :meth:`close` waits for what is queued to be stored.

    ``ingest`` returns an :class:`IngestResult` with this request's ``rejected`` spans and ``errors`` only (its
    rows' ``accepted`` / ``duplicates`` are not told apart within the group's transaction)."""

    def __init__(self, pipeline: GroupWriting, *, max_spans: int = DEFAULT_GROUP_SPANS,
                 max_bytes: int = DEFAULT_GROUP_BYTES) -> None:
        self.pipeline = pipeline
        self.max_spans = max(1, max_spans)
        self.max_bytes = max(1, max_bytes)
        self.stats: Counter[str] = Counter()
        self._queue: deque[_Waiting] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._writing = False  # a request's thread is the writer (whenever requests are queued, one is)
        self._storing = 0  # requests in the transaction under way

    @property
    def queued(self) -> int:
        """Requests waiting for the next group (not counting those in the transaction under way)."""
        with self._changed:
            return len(self._queue)

    @property
    def waiting(self) -> int:
        """Requests not answered yet: queued, or in the transaction under way."""
        with self._changed:
            return len(self._queue) + self._storing

    @property
    def busy(self) -> bool:
        """A group's transaction is under way."""
        with self._changed:
            return self._storing > 0

    def ingest(self, spans: Iterable[SpanData], project: str = DEFAULT_PROJECT) -> IngestResult:
        """Translate in the caller's thread, then wait until these rows are committed (with others'), storing the
        group itself when no other request's thread is. Raises :class:`StoreUnavailable` when that transaction
        failed, as ``Pipeline.ingest`` raises."""
        result = IngestResult()
        rows = self.pipeline.translate_spans(spans, project, result)
        if not rows:
            return result  # nothing to store (all rejected): no transaction, as Pipeline.ingest
        waiting = _Waiting(rows, row_bytes(rows))
        with self._changed:
            if self._closed:
                raise StoreUnavailable("the receiver is shutting down")
            self._queue.append(waiting)
            if not self._writing:  # nobody stores: this thread does (the queue held only this request)
                self._writing = waiting.lead = True
        while not waiting.done:
            if waiting.lead:
                waiting.lead = False
                self._write()  # the group it takes starts with this request, the oldest queued
            else:
                waiting.wake.wait()
                waiting.wake.clear()
        if waiting.error is not None:
            raise StoreUnavailable(f"the transaction storing this request failed: {waiting.error!r}") \
                from waiting.error
        return result

    def close(self) -> None:
        """Wait for the requests queued to be stored; a later ``ingest`` raises StoreUnavailable."""
        with self._changed:
            self._closed = True
            while self._writing:
                self._changed.wait()

    # ------------------------------------------------------------------------------------------------ writer

    def _take(self) -> list[_Waiting]:
        """The requests queued now, oldest first, up to the limits (at least one)."""
        with self._changed:
            group = [self._queue.popleft()]
            spans, size = len(group[0].rows), group[0].size
            while self._queue:
                following = self._queue[0]
                if spans + len(following.rows) > self.max_spans or size + following.size > self.max_bytes:
                    break
                group.append(self._queue.popleft())
                spans += len(following.rows)
                size += following.size
            self._storing = len(group)
            return group

    def _stored(self, group: Sequence[_Waiting], spans: int) -> None:
        self.stats["commits"] += 1
        self.stats["requests"] += len(group)
        self.stats["spans"] += spans
        self.stats["largest_group"] = max(self.stats["largest_group"], len(group))

    def _one_by_one(self, group: Sequence[_Waiting]) -> None:
        """After a group's transaction failed: each request in a transaction of its own, so that a request whose
        own rows make the store fail (bad data) fails alone, not every request stored with it, every time it is
        grouped again. Once two in a row fail, the store itself is failing (down, full, locked): the rest are
        answered as unavailable without another attempt each."""
        failures = 0
        for waiting in group:
            if failures >= 2:
                waiting.error = StoreUnavailable("the store failed the requests stored before this one")
                self.stats["failed_requests"] += 1
                continue
            for row in waiting.rows:  # as translated: the failed transaction gave them keys
                row.custom_id = row.version = None
            try:
                self.pipeline.ingest_rows(waiting.rows)
            except Exception as exc:
                failures += 1
                waiting.error = exc
                self.stats["failed"] += 1
                self.stats["failed_requests"] += 1
                log.warning("a request of %d span(s) stored alone failed too: answered as unavailable (%r)",
                            len(waiting.rows), exc)
            else:
                failures = 0
                self.stats["stored_alone"] += 1
                self._stored([waiting], len(waiting.rows))

    def _write(self) -> None:
        """Store one group with one transaction, wake its requests, then make the oldest request still queued
        the writer (or leave the role free when none is)."""
        try:
            group = self._take()
            rows = group[0].rows if len(group) == 1 else [row for waiting in group for row in waiting.rows]
            try:
                self.pipeline.ingest_rows(rows)  # one transaction: committed when it returns
            except Exception as exc:
                self.stats["failed"] += 1
                if len(group) == 1:
                    log.exception("a transaction of 1 request, %d span(s) failed: it is answered as unavailable "
                                  "and nothing of it is stored", len(rows))
                    self.stats["failed_requests"] += 1
                    group[0].error = exc
                else:
                    log.exception("a transaction of %d requests, %d spans failed: each is stored alone",
                                  len(group), len(rows))
                    self._one_by_one(group)
            except BaseException as exc:  # every waiting request must be woken, whatever it was
                self.stats["failed"] += 1
                self.stats["failed_requests"] += len(group)
                for waiting in group:
                    waiting.error = exc
            else:
                self._stored(group, len(rows))
            with self._changed:
                self._storing = 0
                for waiting in group:
                    waiting.done = True
                    waiting.wake.set()
        finally:
            with self._changed:
                if self._queue:
                    head = self._queue[0]
                    head.lead = True
                    head.wake.set()
                else:
                    self._writing = False
                    self._changed.notify_all()


def group_committer(pipeline: object, max_spans: int = DEFAULT_GROUP_SPANS,
                    max_bytes: int = DEFAULT_GROUP_BYTES) -> GroupCommitter | None:
    """A :class:`GroupCommitter` over ``pipeline`` when it has both halves of ``ingest`` (a real Pipeline); None
    for a pipeline with ``ingest`` only (which the front ends then call per request, as before)."""
    if callable(getattr(pipeline, "translate_spans", None)) and callable(getattr(pipeline, "ingest_rows", None)):
        return GroupCommitter(pipeline, max_spans=max_spans, max_bytes=max_bytes)  # type: ignore[arg-type]
    return None
