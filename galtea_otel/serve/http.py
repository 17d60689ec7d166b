"""OTLP/HTTP ``POST /v1/traces`` as a plain ASGI application (uvicorn parses HTTP; no framework).

Checks run cheapest first and before any body is read: path (404), method (405), token (401), content type
and encoding (415), ``Content-Length`` (413), then a concurrency slot (503 + ``Retry-After`` when none frees
up in time). Only then is the body read, stopping at the limit (413), and handed with the pipeline to a worker
thread (:func:`galtea_otel.serve.ingest.process`). The answer is sent after ``ingest`` returned: after the
commit.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from galtea_otel.serve.ingest import (
    BodyTooLarge,
    Encoding,
    Format,
    Ingests,
    Outcome,
    process,
    status_body,
    success_body,
)
from galtea_otel.serve.options import ServeOptions

log = logging.getLogger("galtea_otel.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TRACES_PATH = "/v1/traces"
LOGS_PATH = "/v1/logs"  # issue 11: gen_ai.evaluation.result log records (galtea_otel.decode.otlp_logs)
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


class OtlpHttpApp:
    """The ASGI application. ``stats`` counts answers by HTTP status (for tests and operators)."""

    def __init__(self, pipeline: Ingests, options: ServeOptions) -> None:
        self.pipeline = pipeline
        self.options = options
        self.stats: Counter[int] = Counter()
        self._expected_token = options.token.encode() if options.token else None
        self._slots = asyncio.Semaphore(options.max_inflight)
        self._queued = 0
        self._retry_after = [(b"retry-after", str(options.retry_after_seconds).encode())]
        self._executor = ThreadPoolExecutor(options.max_inflight, thread_name_prefix="galtea-otel-ingest")

    def close(self) -> None:
        """Wait for in-flight ingests to finish, then release the worker threads."""
        self._executor.shutdown(wait=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await self._handle(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in (TRACES_PATH, LOGS_PATH):
            await self._plain(send, 404, b"not found: OTLP traces are posted to /v1/traces")
            return
        if scope["method"] != "POST":
            await self._plain(send, 405, b"method not allowed: use POST", [(b"allow", b"POST")])
            return
        headers = _headers(scope)
        content_type = _CONTENT_TYPES.get(headers.get(b"content-type", b"").split(b";")[0].strip().lower())
        fmt: Format | None = content_type[0] if content_type else None
        if self._expected_token is not None and not self._authorized(headers.get(b"authorization")):
            await self._error(
                send, fmt, 401, "missing or wrong bearer token", [(b"www-authenticate", b"Bearer")]
            )
            return
        encoding = _ENCODINGS.get(headers.get(b"content-encoding", b"").strip().lower())
        if content_type is None or fmt is None:
            await self._plain(
                send, 415, b"unsupported content type: use application/x-protobuf or application/json"
            )
            return
        if encoding is None:
            await self._error(send, fmt, 415, "unsupported content encoding: use gzip, deflate or none")
            return
        limit = self.options.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._error(send, fmt, 400, "invalid Content-Length")
                return
            # The raw body is held to the limit too (a compressed body bigger than the limit is refused).
            if int(declared) > limit:
                await self._error(send, fmt, 413, f"the request body is larger than {limit} bytes")
                return
        if not await self._enter():
            await self._error(
                send,
                fmt,
                503,
                "the receiver is overloaded, retry later",
                self._retry_after,
            )
            return
        try:
            try:
                body = await _read_body(receive, limit)
            except BodyTooLarge:
                await self._error(send, fmt, 413, f"the request body is larger than {limit} bytes")
                return
            if body is None:
                return  # the client went away before sending its body: nothing to do
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(
                self._executor, process, self.pipeline, body, fmt, encoding, limit, scope["path"] == LOGS_PATH
            )
        finally:
            self._slots.release()
        await self._answer(send, fmt, content_type[1], outcome)

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
        except asyncio.TimeoutError:
            return False
        finally:
            self._queued -= 1

    def _authorized(self, header: bytes | None) -> bool:
        assert self._expected_token is not None
        scheme, _, token = (header or b"").strip().partition(b" ")
        # compare_digest always runs, so a wrong scheme costs the same time as a wrong token.
        same = hmac.compare_digest(token.strip(), self._expected_token)
        return same and scheme.lower() == b"bearer"

    async def _answer(self, send: Send, fmt: Format, content_type: bytes, outcome: Outcome) -> None:
        if outcome.status == 200:
            await self._respond(send, 200, content_type, success_body(fmt, outcome))
            return
        extra = self._retry_after if outcome.status == 503 else []
        await self._error(send, fmt, outcome.status, outcome.message, extra)

    async def _error(
        self,
        send: Send,
        fmt: Format | None,
        status: int,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """An error answer: a ``google.rpc.Status`` in the request's format, or plain text if it has none."""
        if fmt is None:
            await self._plain(send, status, message.encode(), extra)
            return
        content_type = b"application/json" if fmt == "json" else b"application/x-protobuf"
        await self._respond(send, status, content_type, status_body(fmt, status, message), extra)

    async def _plain(
        self, send: Send, status: int, text: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await self._respond(send, status, b"text/plain; charset=utf-8", text, extra)

    async def _respond(
        self,
        send: Send,
        status: int,
        content_type: bytes,
        body: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.stats[status] += 1
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def build_app(pipeline: Ingests, options: ServeOptions) -> OtlpHttpApp:
    """The OTLP/HTTP ASGI app over ``pipeline``; call its ``close()`` after the server stopped."""
    return OtlpHttpApp(pipeline, options)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # ASGI servers give header names in lower case; a repeated header keeps its last value.
    return dict(scope["headers"])


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None if the client disconnected; stops past ``limit`` (:class:`BodyTooLarge`)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
