"""Deferred assembly (``serve --assemble deferred``, and ``auto``, the default of ``galtea-otel serve`` on a
SQLite store file): a request is acknowledged once its translated rows are committed to the *inbox*, and a
second process assembles them into the store, many requests at a time.

Inline assembly (``--assemble inline``; ``auto`` on PostgreSQL and in a receiver embedded in another program's
thread) acknowledges a request after its turns, sessions and aggregates are committed: read-your-writes, but the
acknowledgement waits for the whole of ``Pipeline.ingest_rows`` and everything runs on one core. Here the
request's thread decodes and translates (so rejected spans are still answered as a partial success) and the
group commit writer (:mod:`galtea_otel.serve.writer`) stores each group of requests as one entry of the inbox:
a SQLite file next to the store (``<store>.inbox``), written with the store's ``synchronous`` setting, so an
acknowledged request survives a crash exactly as it would in the store itself.

The assembler is a child process (:class:`AssemblerProcess`, lowered priority so acknowledgements come first,
started with the first request, or when something in the store falls due for a sweep; it leaves when idle,
however many sessions are open, and the receiver starts it again at the next sweep due) that takes
the oldest entries, up to ``batch_spans`` spans, stores them with one ``Pipeline.ingest_rows`` (one
transaction in the store) and only then deletes them from the inbox. A crash between the two stores them again
at the next start, which changes nothing: records are a function of the *set* of spans, and a span stored twice
is a duplicate. The assembler also runs the receiver's sweep (idle close, held spans) at a moment the inbox is
empty, so a session is not closed while its next turn waits in the inbox, and at the latest one interval past due
when the inbox never empties.

What the store refuses: a failed batch is retried entry by entry; an entry whose own rows fail three times is kept
in the inbox, marked failed with its error (``failed`` column), counted as ``inbox_failed_entries`` /
``inbox_failed_spans`` in the store's counters and logged: acknowledged data is never deleted. When the store
itself fails (SQLite's OperationalError: locked past the busy timeout, disk full, I/O), the assembler backs off
(0.5 s doubling to 30 s) and tries the same entries again, without counting an attempt against any of them.

While the inbox holds more than ``--inbox-max-spans`` spans not assembled yet (1,000,000), requests are answered
503 / UNAVAILABLE with Retry-After, as when the store is slow: the clients keep their spans and retry.

Readers see a request once it is assembled: under a steady load that is a batch behind (well under a second on
this machine); :meth:`Inbox.backlog` tells how far behind, and ``galtea-otel inbox`` shows it (with the entries
marked failed, and ``--retry-failed`` to give them back once the cause is fixed). Only a SQLite store
has an inbox: a PostgreSQL deployment scales by running more receivers against it.

Entries are a pickle (protocol 5) of ``(columns, rows as tuples)`` read back by an unpickler that refuses every
global (only tuples, lists, strings, numbers, booleans and None come back); ``columns`` names the row fields, so
an entry written by an earlier release is read by name.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from galtea_otel.pipeline import IngestResult, Pipeline
from galtea_otel.serve.options import DEFAULT_ASSEMBLE_SPANS, DEFAULT_INBOX_SPANS
from galtea_otel.serve.peek import inbox_file
from galtea_otel.serve.process import release_memory, tune_gc
from galtea_otel.serve.writer import StoreUnavailable
from galtea_otel.spandata import SpanData
from galtea_otel.store.rows import row_from_tuple, row_to_tuple
from galtea_otel.translate.row import COLUMNS, DEFAULT_PROJECT, SpanRow

log = logging.getLogger("galtea_otel.serve")

FORMAT = 1  # an entry's body: the pickle below (the ``format`` column, per entry)
SCHEMA = 1  # the inbox file's tables (PRAGMA user_version)
ATTEMPTS = 3  # an entry that fails alone this many times is marked failed (kept, counted)
DEFAULT_BATCH_SPANS = DEFAULT_ASSEMBLE_SPANS
MAX_BACKOFF_S = 30.0
IDLE_EXIT = 3  # the assembler process's exit code when it went idle (not a failure: not restarted until needed)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received_ns INTEGER NOT NULL, spans INTEGER NOT NULL,
    format INTEGER NOT NULL, body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, failed TEXT
)"""


class InboxError(Exception):
    """An inbox entry that cannot be read back (a format this release does not know, or a corrupt body)."""


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise InboxError(f"an inbox entry names {module}.{name}: refused")


def encode(rows: Sequence[SpanRow]) -> bytes:
    return pickle.dumps((COLUMNS, [row_to_tuple(row) for row in rows]), protocol=5)


def decode(body: bytes) -> list[SpanRow]:
    if not body:
        raise InboxError(f"an inbox entry of a body format this galtea-otel does not read (it reads {FORMAT})")
    try:
        columns, values = _NoGlobals(io.BytesIO(body)).load()
    except InboxError:
        raise
    except Exception as exc:
        raise InboxError(f"an unreadable inbox entry: {exc!r}") from exc
    if tuple(columns) == COLUMNS:
        return [row_from_tuple(v) for v in values]
    known = set(COLUMNS)  # written by another release: by name; a field it did not have keeps its default
    rows = []
    try:
        for v in values:
            fields = {c: x for c, x in zip(columns, v, strict=True) if c in known}
            row = SpanRow(**fields)
            row.abandoned = bool(row.abandoned)
            row.key_weak = bool(row.key_weak)
            rows.append(row)
    except Exception as exc:  # a required field missing, a row of another width
        raise InboxError(f"an inbox entry whose rows do not fit this release's: {exc!r}") from exc
    return rows


def inbox_path(store: Any) -> Path:
    """Where the inbox of this store lives; a store that is not a SQLite file has none (ValueError)."""
    path = inbox_file(store)
    if path is None:
        raise ValueError("deferred assembly needs a SQLite store file (a PostgreSQL deployment scales by "
                         "running more receivers instead)")
    return path


@dataclass(frozen=True)
class Backlog:
    entries: int
    spans: int
    failed_entries: int
    failed_spans: int


class Inbox:
    """The inbox file. Thread-safe for the receiver's use (one writer at a time: the group commit writer)."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {synchronous}")
        found = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA:
            self._conn.close()
            raise InboxError(f"{self.path} has inbox schema {found}, newer than this galtea-otel's ({SCHEMA}): "
                             "upgrade galtea-otel")
        self._conn.execute(_SCHEMA)
        if found < SCHEMA:
            self._conn.execute(f"PRAGMA user_version = {SCHEMA}")

    def put(self, rows: Sequence[SpanRow], now_ns: int | None = None) -> None:
        """One entry, committed when this returns."""
        body = encode(rows)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("INSERT INTO inbox (received_ns, spans, format, body) VALUES (?, ?, ?, ?)",
                                   (now_ns or time.time_ns(), len(rows), FORMAT, body))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def take(self, max_spans: int = DEFAULT_BATCH_SPANS) -> list[tuple[int, bytes, int]]:
        """The oldest entries not marked failed, as (id, body, attempts), up to ``max_spans`` spans (at least one
        entry). They stay in the inbox until :meth:`done`. An entry of a body format this release does not know
        comes back with an empty body (it is marked failed, kept for a release that reads it)."""
        taken: list[tuple[int, bytes, int]] = []
        spans = 0
        with self._lock:
            for entry_id, count, fmt, body, attempts in self._conn.execute(
                    "SELECT id, spans, format, body, attempts FROM inbox WHERE failed IS NULL ORDER BY id"
                    " LIMIT 4096"):
                if taken and spans + count > max_spans:
                    break
                taken.append((entry_id, body if fmt == FORMAT else b"", attempts))
                spans += count
        return taken

    def done(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                self._conn.execute(f"DELETE FROM inbox WHERE id IN ({', '.join('?' * len(chunk))})", chunk)

    def attempted(self, entry_id: int, error: str | None) -> None:
        """One more failed attempt of an entry stored alone; ``error`` set: it is marked failed."""
        with self._lock:
            self._conn.execute("UPDATE inbox SET attempts = attempts + 1, failed = ? WHERE id = ?",
                               (error, entry_id))

    def backlog(self) -> Backlog:
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*) FILTER (WHERE failed IS NULL), coalesce(sum(spans) FILTER (WHERE failed IS NULL), 0),"
                " count(*) FILTER (WHERE failed IS NOT NULL),"
                " coalesce(sum(spans) FILTER (WHERE failed IS NOT NULL), 0) FROM inbox").fetchone()
        return Backlog(*row)

    def oldest_ns(self) -> int | None:
        """When the oldest entry still to assemble was received (None: nothing waits)."""
        with self._lock:
            row = self._conn.execute("SELECT min(received_ns) FROM inbox WHERE failed IS NULL").fetchone()
        return int(row[0]) if row[0] is not None else None

    def failed_items(self, limit: int = 50) -> list[tuple[int, int, int, str]]:
        """The entries marked failed, oldest first: (id, received_ns, spans, error)."""
        with self._lock:
            return [(int(a), int(b), int(c), str(d)) for a, b, c, d in self._conn.execute(
                "SELECT id, received_ns, spans, failed FROM inbox WHERE failed IS NOT NULL ORDER BY id LIMIT ?",
                (limit,))]

    def retry_failed(self) -> int:
        """Give the entries marked failed back to the assembler (after the cause is fixed); how many."""
        with self._lock:
            return int(self._conn.execute(
                "UPDATE inbox SET failed = NULL, attempts = 0 WHERE failed IS NOT NULL").rowcount)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class StagingPipeline:
    """The group commit writer's pipeline in deferred mode: translation is the real pipeline's, and "storing" a
    group's rows is committing them as one inbox entry (then the assembler is woken).

    Backpressure: while the inbox holds more than ``max_spans`` spans not assembled yet (read at most every
    ``check_every_s``), a request is refused before it is translated with :class:`StoreUnavailable` (503 +
    ``Retry-After`` / UNAVAILABLE: the client keeps its spans and retries), so a receiver acknowledging faster
    than it assembles does not fill the disk."""

    def __init__(self, pipeline: Any, inbox: Inbox, wake: Callable[[], None], *,
                 max_spans: int = DEFAULT_INBOX_SPANS, check_every_s: float = 0.5) -> None:
        self.pipeline = pipeline
        self.inbox = inbox
        self.wake = wake
        self.max_spans = max_spans
        self.check_every_s = check_every_s
        self.refused = 0
        self._checked = float("-inf")
        self._waiting = 0

    def translate_spans(self, spans: Iterable[SpanData], project: str = DEFAULT_PROJECT,
                        result: IngestResult | None = None) -> list[SpanRow]:
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            self._waiting = self.inbox.backlog().spans
        if self._waiting > self.max_spans:
            self.refused += 1
            raise StoreUnavailable(f"the inbox holds {self._waiting} span(s) not assembled yet (more than "
                                   f"{self.max_spans}): retry later")
        rows: list[SpanRow] = self.pipeline.translate_spans(spans, project, result)
        return rows

    def ingest_rows(self, translated: Sequence[SpanRow], result: IngestResult | None = None) -> IngestResult:
        self.inbox.put(translated)
        self.wake()
        return result if result is not None else IngestResult()


# ------------------------------------------------------------------------------------------------- assembler


class Assembler:
    """Takes inbox entries and stores them with ``pipeline.ingest_rows``; see the module's docstring."""

    def __init__(self, pipeline: Any, inbox: Inbox, *, batch_spans: int = DEFAULT_BATCH_SPANS,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.pipeline = pipeline
        self.inbox = inbox
        self.batch_spans = batch_spans
        self.stats: Counter[str] = Counter()
        self._sleep = sleep
        self._backoff = 0.0

    def step(self) -> int:
        """Assemble one batch; the number of entries taken (0: the inbox is empty)."""
        entries = self.inbox.take(self.batch_spans)
        if not entries:
            return 0
        decoded: list[tuple[int, list[SpanRow], int]] = []
        for entry_id, body, attempts in entries:
            try:
                decoded.append((entry_id, decode(body), attempts))
            except Exception as exc:  # kept and marked, never a crash of the assembler on every restart
                self._failed(entry_id, None, str(exc))
        rows = [row for _, entry_rows, _ in decoded for row in entry_rows]
        if not rows:
            return len(entries)
        try:
            self.pipeline.ingest_rows(rows)
        except Exception as exc:
            self.stats["failed_batches"] += 1
            if _store_failing(exc):
                self._wait(exc, len(rows))
            elif len(decoded) == 1:
                self._alone_failed(decoded[0], exc)
            else:
                log.warning("assembling %d inbox entries (%d spans) failed (%r): each is stored alone",
                            len(decoded), len(rows), exc)
                self._one_by_one(decoded)
            return len(entries)
        self._stored([entry_id for entry_id, _, _ in decoded], len(rows))
        return len(entries)

    def _stored(self, ids: list[int], spans: int) -> None:
        self.inbox.done(ids)
        self._backoff = 0.0
        self.stats["batches"] += 1
        self.stats["entries"] += len(ids)
        self.stats["spans"] += spans

    def _pause(self) -> float:
        self._backoff = min(MAX_BACKOFF_S, max(0.5, self._backoff * 2))
        self._sleep(self._backoff)
        return self._backoff

    def _wait(self, exc: Exception, spans: int) -> None:
        """The store itself fails (locked, full, unreadable): nothing is marked, the batch is tried again."""
        self.stats["store_failures"] += 1
        log.warning("the store failed while assembling %d span(s) (%r); retrying after %.1f s", spans, exc,
                    min(MAX_BACKOFF_S, max(0.5, self._backoff * 2)))
        self._pause()

    def _one_by_one(self, decoded: list[tuple[int, list[SpanRow], int]]) -> None:
        for entry in decoded:
            for row in entry[1]:  # as translated: the failed transaction gave them keys
                row.custom_id = row.version = None
            try:
                self.pipeline.ingest_rows(entry[1])
            except Exception as exc:
                if _store_failing(exc):  # not this entry's fault: the rest wait for the next attempt
                    self._wait(exc, len(entry[1]))
                    return
                self._alone_failed(entry, exc)
            else:
                self._stored([entry[0]], len(entry[1]))

    def _alone_failed(self, entry: tuple[int, list[SpanRow], int], exc: Exception) -> None:
        """This entry's own rows fail: after ``ATTEMPTS`` attempts it is marked failed (kept, counted)."""
        entry_id, rows, attempts = entry
        if attempts + 1 >= ATTEMPTS:
            self._failed(entry_id, rows, f"{exc!r}")
            return
        self.inbox.attempted(entry_id, None)
        log.warning("an inbox entry of %d span(s) failed to assemble (attempt %d of %d; retrying after %.1f s): "
                    "%r", len(rows), attempts + 1, ATTEMPTS, min(MAX_BACKOFF_S, max(0.5, self._backoff * 2)),
                    exc)
        self._pause()

    def _failed(self, entry_id: int, rows: list[SpanRow] | None, error: str) -> None:
        self.inbox.attempted(entry_id, error[:2000])
        count = len(rows) if rows is not None else 0
        self.stats["failed_entries"] += 1
        self.stats["failed_spans"] += count
        try:
            with self.pipeline.store.transaction() as tx:
                tx.add_counter("inbox_failed_entries", 1)
                if count:
                    tx.add_counter("inbox_failed_spans", count)
        except Exception:
            log.exception("could not count a failed inbox entry")
        log.error("an inbox entry of %d span(s) could not be assembled and is kept in %s, marked failed: %s",
                  count, self.inbox.path, error)


def _store_failing(exc: BaseException) -> bool:
    """Whether an error is the store's own (SQLite's OperationalError: locked, disk full, I/O), not the rows'."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.OperationalError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def run_assembler(store_url: str, settings: Any, *, sync: bool = False, evaluate: bool = False,
                  batch_spans: int = DEFAULT_BATCH_SPANS, sweep_interval: float = 30.0, idle_exit: float = 0.0,
                  control: Any = None, niceness: int = 5, own_process: bool = False) -> int:
    """The assembler process's main; returns its exit code. ``control`` (its stdin) brings a byte for each
    wake-up; at its end (the receiver closed it, or is gone) the assembler empties the inbox and returns 0.
    ``idle_exit`` (> 0): once it has had nothing to assemble for that long, it returns ``IDLE_EXIT`` unless a
    sweep is due within that long again (a session about to be idle-closed, a held trace about to be settled):
    the receiver starts it again with the next request, or when the next sweep is due
    (:func:`next_work_ns`). It starts with a sweep, so one started for that sweep does it at once.
    ``own_process``: the process is the assembler's alone (``main``), so its garbage collector is tuned
    (galtea_otel.serve.process)."""
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)  # acknowledgements (the receiver process) come first
    from galtea_otel.store import open_store

    store = open_store(store_url, checkpoint="background")
    pipeline = Pipeline(store, settings, sync=sync)
    pipeline.evaluate = evaluate
    inbox = Inbox(inbox_path(store), getattr(store, "synchronous", "NORMAL"))
    assembler = Assembler(pipeline, inbox, batch_spans=batch_spans)
    wake, stop = threading.Event(), threading.Event()
    if own_process:
        tune_gc()

    def listen() -> None:
        while control is not None and control.read(1):
            wake.set()
        stop.set()
        wake.set()

    threading.Thread(target=listen, name="galtea-otel-assembler-control", daemon=True).start()
    last_work = time.monotonic()
    last_sweep = last_work - sweep_interval  # due at once (after what the inbox holds)
    worked = False
    try:
        while True:
            wake.clear()
            # Told to finish before this look at the inbox: an empty look ends the loop. Told during it (a last
            # wake-up and the end of control can both come while it sweeps), it looks once more.
            stopping = stop.is_set()
            done_before = assembler.stats["entries"] + assembler.stats["failed_entries"]
            taken = assembler.step()
            if worked and not taken:  # the inbox just emptied: idle from here, on the memory of no batch
                release_memory()
            worked = bool(taken)
            if taken:
                last_work = time.monotonic()
            elif idle_exit > 0 and not stop.is_set() and time.monotonic() - last_work >= idle_exit:
                last_work = time.monotonic()  # looked at once an interval, not on every wake-up
                due = next_work_ns(pipeline, inbox)
                if due is None or due > time.time_ns() + idle_exit * 1e9:
                    log.info("assembler: nothing to assemble for %.0f s and no sweep due %s: exiting (the next "
                             "request starts it again)", idle_exit,
                             "before the next request" if due is None else f"for {(due - time.time_ns()) / 1e9:.0f} s")
                    return IDLE_EXIT
            # The sweep waits for a moment the inbox is empty (a session is not idle-closed while its next turn
            # waits here), but never more than one interval past due, so that a receiver that never catches up
            # still closes idle sessions and settles held spans.
            if time.monotonic() - last_sweep >= sweep_interval * (2 if taken else 1):
                last_sweep = time.monotonic()
                try:
                    counts = pipeline.sweep()
                    if any(counts.values()):
                        log.info("sweep: %s", counts)
                        last_work = time.monotonic()
                except Exception:
                    log.exception("sweep failed; retrying in %.0f s", sweep_interval)
            if taken:
                if not stop.is_set() or assembler.stats["entries"] + assembler.stats["failed_entries"] > done_before:
                    continue
                break  # told to finish while the store refuses everything: the rest stays in the inbox
            if stopping:
                break
            wake.wait(min(1.0, sweep_interval))
        return 0
    finally:
        log.info("assembler: %d span(s) in %d batch(es); %d entr(ies) failed", assembler.stats["spans"],
                 assembler.stats["batches"], assembler.stats["failed_entries"])
        inbox.close()
        store.close()


def next_work_ns(pipeline: Pipeline, inbox: Inbox) -> int | None:
    """When an assembler next has something to do (``time.time_ns()``; None: not before the next request): 0
    while the inbox holds entries, else when the next sweep is due (``Pipeline.next_sweep_ns``). The assembler
    asks before it leaves, the receiver before it starts one and when one has left."""
    if inbox.backlog().entries:
        return 0
    return pipeline.next_sweep_ns()


def main() -> None:
    """``python -m galtea_otel.serve.inbox`` with a JSON object of :func:`run_assembler`'s arguments."""
    import dataclasses
    import json
    import sys

    from galtea_otel.settings import PipelineSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = json.loads(sys.argv[1])
    fields = {f.name for f in dataclasses.fields(PipelineSettings)}
    settings = PipelineSettings(**{k: v for k, v in args.pop("settings").items() if k in fields})
    code = run_assembler(args.pop("store_url"), settings, control=sys.stdin.buffer, own_process=True, **args)
    if code:
        # Gone idle (store and inbox closed): out at once, for the thread still blocked reading stdin would
        # abort the interpreter's shutdown.
        logging.shutdown()
        os._exit(code)


class AssemblerProcess:
    """The assembler as a child process (``python -m galtea_otel.serve.inbox``), restarted when it dies;
    :meth:`stop` lets it empty the inbox for at most ``timeout`` seconds. It is woken through its stdin, and
    told to finish by the end of it: a receiver killed outright leaves an assembler that drains and exits.

    ``start(spawn=False)`` leaves the process to the first :meth:`wake` (the first request committed to the
    inbox) or to the time a sweep falls due: a receiver with nothing to assemble or sweep now holds one
    process, not two (its idle memory is the receiver's alone). An assembler that left idle is started again
    the same way."""

    def __init__(self, store_url: str, settings: Any, *, sync: bool = False, evaluate: bool = False,
                 batch_spans: int = DEFAULT_BATCH_SPANS, sweep_interval: float = 30.0, idle_exit: float = 0.0,
                 next_work: Callable[[], int | None] | None = None) -> None:
        import dataclasses
        import json

        self._args = json.dumps({"store_url": store_url, "settings": dataclasses.asdict(settings), "sync": sync,
                                 "evaluate": evaluate, "batch_spans": batch_spans,
                                 "sweep_interval": sweep_interval, "idle_exit": idle_exit})
        # When the process has something to do (next_work_ns): looked at when it left idle, in case a request
        # came in between its last look and its exit (then it is started again at once), and for when the next
        # sweep is due (then the watcher starts it).
        self._next_work = next_work
        self._start_at: int | None = None  # no process: the time.time_ns() at which the watcher starts one
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watch: threading.Thread | None = None
        self.restarts = 0
        self.idle_exits = 0

    def start(self, spawn: bool = True, at: int | None = None) -> None:
        """``spawn``: start the process now; else with the first :meth:`wake`, or at ``at`` (``time.time_ns()``,
        when a sweep is due) if that comes first."""
        if spawn:
            self._spawn()
        else:
            self._start_at = at
        self._watch = threading.Thread(target=self._watch_loop, name="galtea-otel-assembler-watch", daemon=True)
        self._watch.start()

    def _spawn(self) -> None:
        with self._lock:
            self._spawn_locked()

    def _spawn_locked(self) -> subprocess.Popen[bytes]:
        import sys

        self._start_at = None
        self._process = subprocess.Popen([sys.executable, "-m", "galtea_otel.serve.inbox", self._args],
                                         stdin=subprocess.PIPE)
        log.info("deferred assembly: assembler process %d started", self._process.pid)
        return self._process

    def _watch_loop(self) -> None:
        while not self._stopping.wait(0.5):
            process = self._process
            if process is None:
                if self._start_at is not None and time.time_ns() >= self._start_at:
                    with self._lock:
                        if self._process is None and self._start_at is not None and not self._stopping.is_set():
                            self._spawn_locked()  # a sweep is due
                continue
            if process.poll() is None:
                continue
            if process.returncode == IDLE_EXIT:
                with self._lock:  # a wake-up from here on sees no process and starts one
                    if self._process is process and not self._stopping.is_set():
                        self.idle_exits += 1
                        try:
                            due = self._next_work() if self._next_work is not None else None
                        except Exception:  # the store cannot say: started again, to find out for itself
                            log.exception("deferred assembly: could not look up the next sweep")
                            due = 0
                        if due is not None and due <= time.time_ns():
                            self._spawn_locked()  # a request came in as it was leaving
                        else:
                            self._process, self._start_at = None, due
                continue
            self.restarts += 1
            log.error("the assembler process exited (code %s); restarting it", process.returncode)
            if self._stopping.wait(min(5.0, 0.5 * self.restarts)):
                return
            self._spawn()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def wake(self) -> None:
        with self._lock:
            process = self._process
            if process is None and not self._stopping.is_set():
                process = self._spawn_locked()  # the first request: the process starts now
            if process is None or process.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):  # it died: the watcher restarts it
                process.stdin.write(b"w")
                process.stdin.flush()

    def stop(self, timeout: float = 30.0) -> bool:
        """True when the assembler emptied the inbox and exited in time; else it is killed (what it had not
        stored stays in the inbox for the next start)."""
        self._stopping.set()
        if self._watch is not None:
            self._watch.join()
        with self._lock:
            process = self._process
        if process is None:
            return True
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the assembler did not finish within %.0f s: stopped; the inbox keeps the rest", timeout)
            process.kill()
            process.wait()
            return False
        return process.returncode in (0, IDLE_EXIT)


if __name__ == "__main__":
    main()
