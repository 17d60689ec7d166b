"""The receiver process: asyncio + h11 (OTLP/HTTP) and grpcio (OTLP/gRPC) over one pipeline, plus a sweep thread.

:func:`run_server` is what ``galtea-otel serve`` runs: it blocks until SIGTERM / SIGINT, then stops accepting,
lets in-flight requests finish and commit, and closes the store. Tests start a :class:`Receiver` in a thread
with :func:`start_in_thread` on free ports instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from galtea_otel.serve.http import OtlpHttpServer, trace_routes
from galtea_otel.serve.inbox import AssemblerProcess, Inbox, StagingPipeline, inbox_path, next_work_ns
from galtea_otel.serve.ingest import Ingests
from galtea_otel.serve.options import Address, ConfigError, ServeOptions, redact_url
from galtea_otel.serve.process import release_memory, tune_gc
from galtea_otel.serve.projects import Tokens
from galtea_otel.serve.writer import GroupCommitter, group_committer

log = logging.getLogger("galtea_otel.serve")


class Sweeper(threading.Thread):
    """Calls ``pipeline.sweep()`` every ``interval`` seconds: closes idle sessions, settles held spans."""

    def __init__(self, pipeline: Any, interval: float) -> None:
        super().__init__(name="galtea-otel-sweep", daemon=True)
        self.pipeline = pipeline
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        sweep: Callable[[], object] | None = getattr(self.pipeline, "sweep", None)
        while sweep is not None and not self._stop_event.wait(self.interval):
            try:
                counts = sweep()
            except NotImplementedError:
                return
            except Exception:
                log.exception("sweep failed; retrying in %.0f s", self.interval)
                continue
            if isinstance(counts, dict) and any(counts.values()):
                log.info("sweep: %s", counts)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class Receiver:
    """One receiver instance. ``pipeline`` defaults to ``Pipeline(open_store(options.store_url), settings)``
    (then the receiver owns and closes the store). After :attr:`ready` is set, :attr:`http_address` and
    :attr:`grpc_address` are the bound addresses (the real ports when 0 was asked)."""

    def __init__(self, options: ServeOptions, pipeline: Ingests | None = None, *, galtea: Any = None) -> None:
        self.options = options
        self.pipeline = pipeline
        self.galtea = galtea  # a galtea_otel.sync.config.GalteaSyncConfig: run the Galtea sync worker too
        self.sync_worker: Any = None
        self.evaluators: Any = None  # issue 11: a galtea_otel.evaluate.runner.EvaluationRunner (--evaluators)
        self.ready = threading.Event()
        self.http_address: Address | None = None
        self.grpc_address: Address | None = None
        self.app: OtlpHttpServer | None = None
        self.grpc_service: Any = None
        # The group commit writer both front ends store through (galtea_otel.serve.writer); None for a pipeline
        # without ``translate_spans`` / ``ingest_rows``, which is then called per request.
        self.writer: GroupCommitter | None = None
        # Issue 12: which project each token writes, shared by OTLP/HTTP and gRPC; re-read on SIGHUP.
        self.tokens = Tokens(options.token, options.tokens_file)
        # Deferred assembly (galtea_otel.serve.inbox): the inbox requests are committed to, and the process that
        # assembles them.
        self.inbox: Inbox | None = None
        self.assembler: AssemblerProcess | None = None
        # Set by ``run_server`` (the process is galtea-otel's own): tune its garbage collector once ready
        # (galtea_otel.serve.process); a receiver embedded in another program leaves that program's alone.
        self.own_process = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._grpc: Any = None

    def request_stop(self) -> None:
        """Begin a graceful shutdown; safe from any thread and a signal handler. A second call forces it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._stop_in_loop)

    def _stop_in_loop(self) -> None:
        assert self._stopping is not None
        if self._stopping.is_set() and self.app is not None:
            log.warning("second stop request: not waiting for in-flight requests")
            self.app.force_close()
        self._stopping.set()
        if self._grpc is not None:
            self._grpc.stop(self.options.shutdown_grace)  # refuses new RPCs now; in-flight ones finish

    async def serve(self) -> None:
        """Run until :meth:`request_stop`; then drain and close everything this receiver opened."""
        options = self.options
        for warning in options.check():
            log.warning("%s", warning)
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        owned_store = None
        pipeline = self.pipeline
        if pipeline is None:
            pipeline, owned_store = _open_pipeline(options, sync=self.galtea is not None)
            self.pipeline = pipeline
        sweeper = Sweeper(pipeline, options.sweep_interval)
        deferred = self._deferred(owned_store)
        if not deferred:  # deferred: the writer stores into the inbox, made below
            self.writer = group_committer(pipeline, options.group_max_spans, options.group_max_bytes)
        ingestor: Ingests = self.writer if self.writer is not None else pipeline
        if self.galtea is not None:
            from galtea_otel.sync.worker import SyncWorker

            self.sync_worker = SyncWorker(pipeline.store, self.galtea)  # type: ignore[attr-defined]
        sock: socket.socket | None = None
        grpc_server: Any = None
        try:
            if deferred:  # the assembler process sweeps, after what the inbox holds
                if owned_store is None:
                    raise ConfigError("deferred assembly needs the receiver to open its own store")
                self._start_assembler(pipeline, owned_store)
                assert self.inbox is not None and self.assembler is not None
                staging = StagingPipeline(pipeline, self.inbox, self.assembler.wake,
                                          max_spans=options.inbox_max_spans)
                self.writer = group_committer(staging, options.group_max_spans, options.group_max_bytes)
                ingestor = self.writer if self.writer is not None else pipeline
            if options.http is not None:
                _raise_file_limit(options.max_connections)
                sock = _bind(options.http)
                self.http_address = Address(options.http.host, sock.getsockname()[1])
                self.app = OtlpHttpServer(trace_routes(ingestor), options, self.tokens)
            if options.grpc is not None:
                from galtea_otel.serve.grpc_service import start_grpc_server

                grpc_server, self.grpc_service, port = start_grpc_server(ingestor, options, options.grpc,
                                                                          self.tokens)
                self._grpc = grpc_server
                self.grpc_address = Address(options.grpc.host, port)
            if self.assembler is None:
                sweeper.start()
            if self.evaluators is not None:  # issue 11: sessions that end are queued and evaluated
                self.evaluators.attach(pipeline)
            if self.sync_worker is not None:
                self.sync_worker.start()
            if self.app is not None and sock is not None:
                await self.app.start(sock)
            trimmer = None
            if self.own_process:
                tune_gc()
                trimmer = asyncio.create_task(self._release_when_quiet())
            self._announce(pipeline)
            await self._stopping.wait()
            if trimmer is not None:
                trimmer.cancel()
            if self.app is not None:
                await self.app.shutdown(options.shutdown_grace)
        finally:
            self.ready.set()  # also when it failed to start: nobody waits forever
            log.info("galtea-otel receiver: shutting down")
            if grpc_server is not None:
                stopped = grpc_server.stop(options.shutdown_grace)
                await asyncio.get_running_loop().run_in_executor(None, stopped.wait)
            if self.app is not None:
                self.app.close()
            if self.writer is not None:  # no request is left waiting: both front ends are drained
                self.writer.close()
                stats = self.writer.stats
                log.info("group commit: %d request(s) stored in %d transaction(s), %d failed", stats["requests"],
                         stats["commits"], stats["failed"])
            if sweeper.is_alive():
                sweeper.stop()
            if self.assembler is not None:  # what it does not assemble in time stays in the inbox
                await asyncio.get_running_loop().run_in_executor(None, self.assembler.stop,
                                                                 options.shutdown_grace)
            if self.inbox is not None:
                self.inbox.close()
            if self.sync_worker is not None and self.sync_worker.is_alive():
                self.sync_worker.stop()  # what is not sent stays in the outbox for the next start
            if self.evaluators is not None:  # what is not evaluated stays queued for the next start
                await asyncio.get_running_loop().run_in_executor(None, self.evaluators.stop)
            if sock is not None:
                sock.close()
            if owned_store is not None:
                owned_store.close()
            log.info("galtea-otel receiver: stopped")

    async def _release_when_quiet(self, every: float = 2.0) -> None:
        """galtea-otel's own process: once the requests stop (none stored during a whole interval after some
        were), give the memory their bodies and rows freed back to the system (``release_memory``)."""
        seen = busy = 0
        while True:
            await asyncio.sleep(every)
            stored = self.writer.stats["requests"] if self.writer is not None else 0
            if stored != seen:
                seen, busy = stored, 1
            elif busy:
                busy = 0
                await asyncio.get_running_loop().run_in_executor(None, release_memory)

    def _deferred(self, owned_store: Any) -> bool:
        """Whether this receiver assembles deferred: asked for, or ``auto`` in galtea-otel's own process on a
        SQLite store file it opened (a receiver in another program's thread does not start a second process;
        PostgreSQL has no inbox: it scales by running more receivers)."""
        if self.options.assemble != "auto":
            return self.options.assemble == "deferred"
        if not self.own_process or owned_store is None:
            return False
        try:
            inbox_path(owned_store)
        except ValueError:
            return False
        return True

    def _start_assembler(self, pipeline: Any, store: Any) -> None:
        try:
            path = inbox_path(store)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        inbox = self.inbox = Inbox(path, store.synchronous)
        self.assembler = AssemblerProcess(store.url, self.options.settings, sync=self.galtea is not None,
                                          evaluate=self.evaluators is not None,
                                          batch_spans=self.options.assemble_batch_spans,
                                          sweep_interval=self.options.sweep_interval,
                                          idle_exit=self.options.assembler_idle_exit,
                                          next_work=lambda: next_work_ns(pipeline, inbox))
        backlog = inbox.backlog()
        # Started now when there is something to assemble or sweep (entries left by an earlier run, a session
        # past its idle close, a held trace past its hold); else by the first request the inbox takes, or when
        # the next sweep is due.
        due = next_work_ns(pipeline, inbox)
        now = due is not None and due <= time.time_ns()
        self.assembler.start(spawn=now, at=due)
        log.info("deferred assembly: inbox %s (%d span(s) waiting), %s", path, backlog.spans,
                 f"assembler process {self.assembler.pid}" if now else "the assembler starts with the first request"
                 + ("" if due is None else f" or in {(due - time.time_ns()) / 1e9:.0f} s (a sweep is due)"))

    def wait_assembled(self, timeout: float = 30.0) -> bool:
        """Deferred assembly: wait until the inbox holds nothing left to assemble (True), at most ``timeout``
        seconds. Inline: True at once."""
        if self.inbox is None:
            return True
        deadline = time.monotonic() + timeout
        while self.inbox.backlog().entries:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _announce(self, pipeline: Ingests) -> None:
        store_url = getattr(getattr(pipeline, "store", None), "url", None) or self.options.store_url or "?"
        log.info(
            "galtea-otel receiver ready: OTLP/HTTP on %s, OTLP/gRPC on %s, store %s%s%s",
            f"http://{self.http_address}/v1/traces" if self.http_address else "off",
            self.grpc_address or "off",
            redact_url(store_url),
            "; a bearer token is required" if self.tokens.required else "",
            f"; syncing to the Galtea platform at {self.galtea.base_url}" if self.galtea is not None else "",
        )
        self.ready.set()


def _open_pipeline(options: ServeOptions, *, sync: bool = False) -> tuple[Ingests, Any]:
    from galtea_otel.pipeline import Pipeline
    from galtea_otel.store import open_store

    store = open_store(options.store_url, checkpoint="background")  # the WAL copied beside the writer
    redact = None
    if options.redact_secrets:
        from galtea_otel.redact import secrets

        redact = secrets()
    return Pipeline(store, options.settings, sync=sync, redact=redact), store


def _raise_file_limit(connections: int) -> None:
    """Make room for ``connections`` sockets (and some files): raise the soft RLIMIT_NOFILE up to the hard one."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("the open-file limit (%d) is below --max-connections + 256: raise it (ulimit -n)", soft)


def _bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_server(options: ServeOptions, pipeline: Ingests | None = None, *, galtea: Any = None,
               evaluators: Any = None) -> None:
    """Serve until SIGTERM / SIGINT (a second one forces the exit), then shut down cleanly. With ``galtea`` (a
    ``GalteaSyncConfig``), sessions are also enqueued and sent to the Galtea platform by a worker thread."""
    receiver = Receiver(options, pipeline, galtea=galtea)
    receiver.evaluators = evaluators  # issue 11
    receiver.own_process = True

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, receiver.request_stop)
        # Issue 12: SIGHUP re-reads --tokens (a bad file keeps the tokens in force, and says why in the log).
        loop.add_signal_handler(signal.SIGHUP, receiver.tokens.reload)
        await receiver.serve()

    asyncio.run(main())


@contextlib.contextmanager
def start_in_thread(options: ServeOptions, pipeline: Ingests | None = None, *,
                    galtea: Any = None) -> Iterator[Receiver]:
    """Run a receiver in a background thread for the ``with`` block (tests, benchmarks, embedding)."""
    receiver = Receiver(options, pipeline, galtea=galtea)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(receiver.serve())
        except BaseException as exc:
            failure.append(exc)
            receiver.ready.set()

    thread = threading.Thread(target=target, name="galtea-otel-receiver", daemon=True)
    thread.start()
    receiver.ready.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield receiver
    finally:
        receiver.request_stop()
        thread.join()
        if failure:
            raise failure[0]
