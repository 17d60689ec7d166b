"""OTLP/HTTP: a small asyncio HTTP/1.1 server on ``h11``, built to survive slow and hostile clients.

Why not uvicorn: it has no time limit on reading request headers, so connections that never finish their headers
held every slot (issue 12). Here each phase of a connection has a deadline, and nothing scarce is held by a client
that is not sending:

- **Connections.** At most ``max_connections`` in all and ``max_connections_per_client`` per client address.
  When a cap is reached, the oldest *unproductive* connection (headers not complete yet, or idle between
  requests) is closed to make room; a connection whose request is being read or served is never evicted, and a
  new connection is refused only when every one counted against the cap is busy.
- **Headers.** The request line and headers must be complete within ``header_timeout`` seconds of the
  connection's opening (an idle kept-alive connection: within ``keepalive_timeout`` of the last answer, then
  ``header_timeout`` from its first byte), at most 64 KiB of them; else the connection is closed.
- **Checks before the body.** Path (404), method (405), token (401), content type and encoding (415),
  ``Content-Length`` (413) are answered as soon as the headers are in, before a byte of the body is read.
- **Body.** It must keep arriving at ``body_min_rate`` bytes/s, judged over each ``body_timeout`` window
  (a client that sends less in a window, or nothing, gets 408 and is disconnected). Chunked bodies (no
  ``Content-Length``, as the Node.js OTLP exporter sends them) are read the same way, and stop at the limit.
- **Memory.** Body bytes held at once (being read, waiting for a slot, being processed) are bounded by
  ``max_buffered_bytes`` (default ``max_inflight x max_body_bytes``); a body that cannot get room within
  ``queue_timeout`` gets 503 + ``Retry-After``. A client that trickles holds only what it sent.
- **Ingest slots** (``max_inflight``) are taken only once the whole body is in; up to ``max_queued`` bodies
  wait at most ``queue_timeout`` for one, then get 503 + ``Retry-After``. The body is then decompressed,
  decoded and translated in a worker thread, which then waits (still holding its slot) for the group commit
  writer (``galtea_otel.serve.writer``) to store its rows, with those of the requests waiting with it, in one
  transaction; the answer is sent after the commit.

Routes are a table (:class:`Route`): path -> blocking ``process(body, format, encoding, limit) -> Outcome`` and
the success body it answers, so a second OTLP signal is one more entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import h11

from galtea_otel.serve.ingest import (
    Encoding,
    Format,
    Ingests,
    Outcome,
    process,
    status_body,
    success_body,
)
from galtea_otel.serve.options import ServeOptions
from galtea_otel.serve.projects import Tokens

log = logging.getLogger("galtea_otel.serve")

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"  # issue 11: gen_ai.evaluation.result log records (galtea_otel.decode.otlp_logs)
MAX_HEADER_BYTES = 64 * 1024
READ_SIZE = 64 * 1024
_CONTENT_TYPES: dict[bytes, tuple[Format, bytes]] = {
    b"application/x-protobuf": ("proto", b"application/x-protobuf"),
    b"application/protobuf": ("proto", b"application/x-protobuf"),
    b"application/json": ("json", b"application/json"),
}
_ENCODINGS: dict[bytes, Encoding] = {
    b"": "identity",
    b"identity": "identity",
    b"gzip": "gzip",
    b"x-gzip": "gzip",
    b"deflate": "deflate",
}
_REASONS = {
    200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large", 415: b"Unsupported Media Type",
    503: b"Service Unavailable",
}
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Route:
    """One OTLP signal on OTLP/HTTP: ``process`` (blocking, run in a worker thread) decompresses, decodes and
    ingests a body and says what to answer; ``success_body`` renders a 200 in the request's format."""

    process: Callable[[bytes, Format, Encoding, int, str], Outcome]  # ..., the token's project
    success_body: Callable[[Format, Outcome], bytes]


def trace_routes(pipeline: Ingests) -> dict[str, Route]:
    return {TRACES_PATH: Route(partial(process, pipeline), success_body),
            LOGS_PATH: Route(partial(process, pipeline, logs=True), _logs_success_body)}


def _logs_success_body(fmt: Format, outcome: Outcome) -> bytes:
    """An ``ExportLogsServiceResponse``: the same wire form as the traces one, but for its JSON field name."""
    if fmt == "json" and outcome.rejected:
        partial = {"rejectedLogRecords": str(outcome.rejected), "errorMessage": outcome.message}
        return json.dumps({"partialSuccess": partial}, ensure_ascii=False).encode()
    return success_body(fmt, outcome)


class _Closed(Exception):
    """The connection is over (client gone, evicted, timed out, or a protocol error already answered)."""


class _Reject(Exception):
    """Answer ``status`` now and close the connection (the rest of the body is drained if small)."""

    def __init__(self, status: int, message: str, extra: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or []


class _Budget:
    """Body bytes held at once, across connections. ``take`` waits (bounded) for room; ``give`` returns it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._freed = asyncio.Condition()

    async def take(self, size: int, deadline: float) -> bool:
        """Room for ``size`` more bytes, waiting for it until ``deadline`` (``time.monotonic()``) at most."""
        if self.used + size <= self.capacity:
            self.used += size
            return True
        async with self._freed:
            while self.used + size > self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), remaining)
            self.used += size
            return True

    async def give(self, size: int) -> None:
        if size:
            self.used -= size
            async with self._freed:
                self._freed.notify_all()


class _Connection:
    """One client connection: its h11 state machine, its stream, and whether it may be evicted."""

    __slots__ = ("busy", "client", "counted", "h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str) -> None:
        self.reader = reader
        self.writer = writer
        self.client = client
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.busy = False  # a request's headers are in: reading its body or serving it
        self.counted = False  # counted against the connection caps

    def close(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()


class OtlpHttpServer:
    """OTLP/HTTP over asyncio + h11. ``stats`` counts answers by HTTP status, and connection events by name
    (``evicted``, ``refused``, ``header_timeout``, ``body_timeout``) for tests and operators."""

    def __init__(self, routes: Mapping[str, Route], options: ServeOptions, tokens: Tokens | None = None) -> None:
        self.routes = dict(routes)
        self.options = options
        self.stats: Counter[int | str] = Counter()
        self.tokens = tokens if tokens is not None else Tokens(options.token, options.tokens_file)
        self._slots = asyncio.Semaphore(options.max_inflight)
        self._budget = _Budget(options.buffered_bytes_limit)
        self._queued = 0
        self._retry_after = [(b"retry-after", str(options.retry_after_seconds).encode())]
        self._executor = ThreadPoolExecutor(options.max_inflight, thread_name_prefix="galtea-otel-ingest")
        self._connections: dict[_Connection, None] = {}  # insertion order: oldest first
        self._per_client: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # ------------------------------------------------------------------------------------------- lifecycle

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(
            self._accepted, sock=sock, limit=READ_SIZE, backlog=1024
        )

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, close idle connections, let requests being served finish (at most ``grace`` s)."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if not conn.busy:
                conn.close()
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for conn in list(self._connections):
                conn.close()
            if still:
                await asyncio.wait(still, timeout=5)

    def force_close(self) -> None:
        for conn in list(self._connections):
            conn.close()

    def close(self) -> None:
        """Wait for in-flight ingests to finish, then release the worker threads."""
        self._executor.shutdown(wait=True)

    # ----------------------------------------------------------------------------------------- connections

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        conn = _Connection(reader, writer, client)
        if self._stopping or not self._admit(conn):
            self.stats["refused"] += 1
            conn.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections[conn] = None
        self._per_client[client] += 1
        conn.counted = True
        try:
            await self._serve_connection(conn)
        except (_Closed, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("OTLP/HTTP connection failed")
        finally:
            self._forget(conn)
            self._tasks.discard(task)
            conn.close()

    def _admit(self, new: _Connection) -> bool:
        """Room for ``new`` under both caps, evicting the oldest unproductive connections if needed."""
        options = self.options
        if self._per_client[new.client] >= options.max_connections_per_client and not self._evict(new.client):
            return False
        return len(self._connections) < options.max_connections or self._evict(None)

    def _evict(self, client: str | None) -> bool:
        for conn in self._connections:
            if not conn.busy and (client is None or conn.client == client):
                self.stats["evicted"] += 1
                self._forget(conn)  # uncounted now: its task ends a little later
                conn.close()
                return True
        return False

    def _forget(self, conn: _Connection) -> None:
        if conn.counted:
            conn.counted = False
            del self._connections[conn]
            self._per_client[conn.client] -= 1
            if not self._per_client[conn.client]:
                del self._per_client[conn.client]

    async def _serve_connection(self, conn: _Connection) -> None:
        first = True
        while True:
            request = await self._read_headers(conn, first)
            first = False
            if request is None:
                return
            conn.busy = True
            keep_alive = await self._handle(conn, request)
            if not keep_alive or self._stopping or conn.h11.our_state is h11.MUST_CLOSE:
                return
            if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                return
            conn.h11.start_next_cycle()
            conn.busy = False

    async def _read_headers(self, conn: _Connection, first: bool) -> h11.Request | None:
        """The next request's headers, or None when the client closed (or stayed idle too long)."""
        options = self.options
        now = time.monotonic()
        deadline = now + (options.header_timeout if first else options.keepalive_timeout)
        started = first
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(conn, exc)
                raise _Closed from None
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None
            if event is not h11.NEED_DATA:
                raise _Closed  # PAUSED or an unexpected event: give up on this connection
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if started:
                    self.stats["header_timeout"] += 1
                return None
            try:
                data = await asyncio.wait_for(conn.reader.read(READ_SIZE), remaining)
            except TimeoutError:
                continue
            if data and not started:  # a kept-alive connection's next request begins: its headers' deadline
                started = True
                deadline = time.monotonic() + options.header_timeout
            conn.h11.receive_data(data)

    async def _protocol_error(self, conn: _Connection, exc: h11.RemoteProtocolError) -> None:
        if conn.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint if exc.error_status_hint in (400, 413, 431) else 400
        with contextlib.suppress(Exception):
            await self._send(conn, status, b"text/plain; charset=utf-8", b"malformed HTTP request", [], close=True)

    # -------------------------------------------------------------------------------------------- requests

    async def _handle(self, conn: _Connection, request: h11.Request) -> bool:
        """Serve one request; True if the connection may carry another."""
        headers = {name: value for name, value in request.headers}  # lower-case names; the last one wins
        content_type = _CONTENT_TYPES.get(headers.get(b"content-type", b"").split(b";")[0].strip().lower())
        fmt: Format | None = content_type[0] if content_type else None
        held = 0
        try:
            route, encoding, declared, project = self._check_headers(request, headers, fmt)
            assert content_type is not None and fmt is not None and encoding is not None
            if conn.h11.they_are_waiting_for_100_continue:
                await self._write(conn, conn.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
            limit = self.options.max_body_bytes
            body, held = await self._read_body(conn, limit, declared)
            if not await self._enter():
                raise _Reject(503, "the receiver is overloaded, retry later", self._retry_after)
            try:
                loop = asyncio.get_running_loop()
                outcome = await loop.run_in_executor(self._executor, route.process, body, fmt, encoding, limit,
                                                     project)
            finally:
                self._slots.release()
            del body
        except _Reject as reject:
            await self._budget.give(held)
            held = 0
            await self._reject(conn, fmt, reject)
            return False
        finally:
            await self._budget.give(held)  # whatever happened, the body's bytes go back to the budget
        if outcome.status == 200:
            await self._send(conn, 200, content_type[1], route.success_body(fmt, outcome), [])
            return True
        extra = self._retry_after if outcome.status == 503 else []
        await self._error(conn, fmt, outcome.status, outcome.message, extra)
        return True

    def _check_headers(
        self, request: h11.Request, headers: dict[bytes, bytes], fmt: Format | None
    ) -> tuple[Route, Encoding | None, int | None, str]:
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        route = self.routes.get(path)
        if route is None:
            paths = ", ".join(sorted(self.routes))
            raise _Reject(404, f"not found: OTLP is posted to {paths}")
        if request.method != b"POST":
            raise _Reject(405, "method not allowed: use POST", [(b"allow", b"POST")])
        project = self.tokens.project_of_header(headers.get(b"authorization"))
        if project is None:
            raise _Reject(401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")])
        if fmt is None:
            raise _Reject(415, "unsupported content type: use application/x-protobuf or application/json")
        encoding = _ENCODINGS.get(headers.get(b"content-encoding", b"").strip().lower())
        if encoding is None:
            raise _Reject(415, "unsupported content encoding: use gzip, deflate or none")
        limit = self.options.max_body_bytes
        declared_text = headers.get(b"content-length")
        declared = None
        if declared_text is not None:
            declared = int(declared_text)  # h11 checked that it is a number
            # The raw body is held to the limit too (a compressed body bigger than the limit is refused).
            if declared > limit:
                raise _Reject(413, f"the request body is larger than {limit} bytes")
        return route, encoding, declared, project

    async def _read_body(self, conn: _Connection, limit: int, declared: int | None) -> tuple[bytes, int]:
        """The whole body and the budget it holds. Each ``body_timeout`` window must bring at least
        ``body_min_rate x body_timeout`` bytes (408 otherwise); room for every chunk is taken from the budget
        as it arrives (503 when none frees up within ``queue_timeout``); past ``limit``: 413."""
        options = self.options
        window = options.body_timeout
        needed = options.body_min_rate * window
        window_end = time.monotonic() + window
        window_bytes = 0
        # The whole body waits for room in the budget for at most queue_timeout, however many chunks it has.
        budget_wait = options.queue_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                try:
                    event = conn.h11.next_event()
                except h11.RemoteProtocolError as exc:
                    raise _Reject(400, f"malformed request body: {exc}") from None
                if isinstance(event, h11.Data):
                    chunk = bytes(event.data)
                    if size + len(chunk) > limit:
                        raise _Reject(413, f"the request body is larger than {limit} bytes")
                    waited_from = time.monotonic()
                    if not await self._budget.take(len(chunk), waited_from + budget_wait):
                        raise _Reject(503, "the receiver is overloaded, retry later", self._retry_after)
                    waited = time.monotonic() - waited_from
                    budget_wait -= waited
                    window_end += waited  # our wait is not the client's slowness
                    size += len(chunk)
                    chunks.append(chunk)
                    continue
                if isinstance(event, h11.EndOfMessage):
                    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    return body, size
                if isinstance(event, h11.ConnectionClosed):
                    raise _Closed
                if event is not h11.NEED_DATA:
                    raise _Closed
                now = time.monotonic()
                if now >= window_end:
                    if window_bytes < needed:
                        self.stats["body_timeout"] += 1
                        raise _Reject(408, f"the request body arrived slower than {options.body_min_rate} bytes/s")
                    window_end, window_bytes = now + window, 0
                try:
                    data = await asyncio.wait_for(conn.reader.read(READ_SIZE), window_end - now)
                except TimeoutError:
                    continue
                window_bytes += len(data)
                conn.h11.receive_data(data)
        except BaseException:
            await self._budget.give(size)
            raise

    async def _enter(self) -> bool:
        """Take an ingest slot, waiting at most ``queue_timeout`` behind at most ``max_queued`` others."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self._queued >= self.options.max_queued:
            return False
        self._queued += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.options.queue_timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._queued -= 1

    # ---------------------------------------------------------------------------------------------- answers

    async def _reject(self, conn: _Connection, fmt: Format | None, reject: _Reject) -> None:
        """An error answered before the body was read (or while reading it): answer, drain what is left of a
        body of reasonable size (so the client can read the answer), then close."""
        if conn.h11.our_state is not h11.SEND_RESPONSE:
            raise _Closed
        waiting_for_100 = conn.h11.they_are_waiting_for_100_continue
        await self._error(conn, fmt, reject.status, reject.message, reject.extra, close=True)
        if reject.status != 408 and not waiting_for_100:
            await self._drain(conn)

    async def _drain(self, conn: _Connection) -> None:
        """Read and discard the rest of the body: at most twice the body limit, at the minimum rate."""
        options = self.options
        budget = 2 * options.max_body_bytes + READ_SIZE
        deadline = time.monotonic() + options.body_timeout
        window_bytes = 0
        while budget > 0:
            try:
                event = conn.h11.next_event()
            except h11.ProtocolError:
                return
            if isinstance(event, h11.Data):
                budget -= len(event.data)
                continue
            if event is not h11.NEED_DATA:
                return  # EndOfMessage, ConnectionClosed
            now = time.monotonic()
            if now >= deadline:
                if window_bytes < options.body_min_rate * options.body_timeout:
                    return
                deadline, window_bytes = now + options.body_timeout, 0
            try:
                data = await asyncio.wait_for(conn.reader.read(READ_SIZE), deadline - now)
            except TimeoutError:
                continue
            if not data:
                return
            window_bytes += len(data)
            conn.h11.receive_data(data)

    async def _error(
        self,
        conn: _Connection,
        fmt: Format | None,
        status: int,
        message: str,
        extra: Headers | None = None,
        *,
        close: bool = False,
    ) -> None:
        """An error answer: a ``google.rpc.Status`` in the request's format, or plain text if it has none."""
        if fmt is None:
            await self._send(conn, status, b"text/plain; charset=utf-8", message.encode(), extra or [], close=close)
            return
        content_type = b"application/json" if fmt == "json" else b"application/x-protobuf"
        await self._send(conn, status, content_type, status_body(fmt, status, message), extra or [], close=close)

    async def _send(
        self, conn: _Connection, status: int, content_type: bytes, body: bytes, extra: Headers,
        *, close: bool = False,
    ) -> None:
        self.stats[status] += 1
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
        if close or self._stopping:
            headers.append((b"connection", b"close"))
        h = conn.h11
        data = h.send(h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b"")))
        data += h.send(h11.Data(data=body)) or b""
        data += h.send(h11.EndOfMessage()) or b""
        await self._write(conn, data or b"")

    async def _write(self, conn: _Connection, data: bytes | None) -> None:
        if not data:
            return
        conn.writer.write(data)
        try:
            await asyncio.wait_for(conn.writer.drain(), self.options.body_timeout)
        except TimeoutError:
            raise _Closed from None  # the client does not read its answer

