"""OTLP/gRPC ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` and
``opentelemetry.proto.collector.logs.v1.LogsService/Export`` on grpcio.

The logs service (issue 11) takes ``gen_ai.evaluation.result`` log records (``galtea_otel.decode.otlp_logs``) with
the same contract as traces: the same token, limits and ingest slots (shared by both services), OK only after
commit, ``partial_success.rejected_log_records`` for records that cannot be placed, UNAVAILABLE + ``RetryInfo``
when the store fails.

grpcio enforces the size limit (``grpc.max_receive_message_length``, after decompression: RESOURCE_EXHAUSTED)
and gzip. The servicer checks the token (UNAUTHENTICATED) on the call's headers, reads the message, takes one of
``max_inflight`` ingest slots or answers UNAVAILABLE with a ``RetryInfo`` after ``queue_timeout``, and returns
only after ``ingest`` committed (through the group commit writer shared with OTLP/HTTP, galtea_otel.serve.writer:
one transaction for the requests of both protocols that wait for the store together).

Slow and idle clients (issue 12): the connection limits are grpcio's server options (:func:`grpc_options`): at
most ``max_connections`` connections (grpcio refuses more), an HTTP/2 handshake within ``header_timeout``,
idle connections closed after ``keepalive_timeout``, a maximum connection age, keepalive pings to drop dead
peers, limits on abusive pings, and at most ``MAX_STREAMS_PER_CONNECTION`` calls per connection. A call's
message must arrive within ``body_timeout`` of the call's start (else the call is cancelled), and only a call
whose message is in takes an ingest slot: slow senders hold none.

Memory under a slow store (RELIABILITY 5): ``Export`` is registered as a *client-streaming* method taking raw
bytes. The wire format is the same as unary (one length-prefixed message, then end of stream), so every
client's unary call works unchanged, but grpcio invokes the handler on the call's headers and reads the message
only when the handler asks for it: after the token check and once the call holds one of ``2 x max_inflight + 4``
reading slots (a unary handler gets its message already read and parsed: every waiting call held its whole
body). With HTTP/2 BDP probing off, a call whose message is not read holds at most its stream window, 64 KiB,
in grpcio's transport; so at most ``2 x max_inflight + 4`` messages are in memory, ``max_inflight`` of them decoded.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from galtea_otel.decode.common import DecodeResult
from galtea_otel.decode.otlp_logs import decode_logs_proto
from galtea_otel.decode.otlp_proto import DecodeError, decode_proto
from galtea_otel.serve.ingest import MAX_MESSAGE_CHARS, Ingests, Outcome, export_response, ingest_decoded
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.projects import Tokens

log = logging.getLogger("galtea_otel.serve")


SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
Response = TypeVar("Response", ExportTraceServiceResponse, ExportLogsServiceResponse)


def logs_response(outcome: Outcome) -> ExportLogsServiceResponse:
    """The protobuf ``ExportLogsServiceResponse`` for an outcome (rejected records as a partial success)."""
    if not outcome.rejected:
        return ExportLogsServiceResponse()
    partial = ExportLogsPartialSuccess(rejected_log_records=outcome.rejected, error_message=outcome.message)
    return ExportLogsServiceResponse(partial_success=partial)


class TraceService:
    """The Export RPCs of both services (raw request bytes in): :meth:`Export` (traces) and :meth:`ExportLogs`
    (logs), sharing the token, the reading and ingest slots and the queue. ``stats`` counts answers by gRPC
    status code name (both services; ``logs_OK`` counts the logs calls answered OK)."""

    def __init__(self, pipeline: Ingests, options: ServeOptions, tokens: Tokens | None = None) -> None:
        self.pipeline = pipeline
        self.options = options
        self.stats: Counter[str] = Counter()
        self.tokens = tokens if tokens is not None else Tokens(options.token, options.tokens_file)
        self._slots = threading.BoundedSemaphore(options.max_inflight)
        self._readers = threading.BoundedSemaphore(READERS_PER_SLOT * options.max_inflight + EXTRA_READERS)
        self._queue_lock = threading.Lock()
        self._queued = 0
        retry = RetryInfo(retry_delay=Duration(seconds=options.retry_after_seconds))
        self._retry_metadata = (("google.rpc.retryinfo-bin", retry.SerializeToString()),)

    def Export(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        return self._export(requests, context, decode_proto, export_response)

    def ExportLogs(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        response = self._export(requests, context, decode_logs_proto, logs_response)
        self.stats["logs_OK"] += 1
        return response

    def _export(self, requests: Iterator[bytes], context: grpc.ServicerContext,
                decode: Callable[[bytes], DecodeResult], respond: Callable[[Outcome], Response]) -> Response:
        project = self._project(context)
        if project is None:
            self._abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        if not self._take(self._readers):
            self._overloaded(context)
        try:
            body = self._read(requests, context)
            if not self._take(self._slots):
                self._overloaded(context)
            try:
                try:
                    decoded = decode(body)
                except DecodeError as exc:
                    self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc)[:MAX_MESSAGE_CHARS])
                del body
                outcome = ingest_decoded(self.pipeline, decoded, project)
            finally:
                self._slots.release()
        finally:
            self._readers.release()
        if outcome.status != 200:  # the store failed: let the client retry
            context.set_trailing_metadata(self._retry_metadata)
            self._abort(context, grpc.StatusCode.UNAVAILABLE, outcome.message)
        self.stats["OK"] += 1
        return respond(outcome)

    def _read(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """The call's message; the call is cancelled if it does not arrive within ``body_timeout``."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            context.cancel()

        timer = threading.Timer(self.options.body_timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            body = next(requests, None)  # only now does grpcio read the message
        except grpc.RpcError:
            self.stats["body_timeout" if expired.is_set() else "CANCELLED"] += 1
            raise
        finally:
            timer.cancel()
        if expired.is_set():  # under load grpcio may end a cancelled call's requests instead of raising
            self.stats["body_timeout"] += 1
            context.abort(grpc.StatusCode.CANCELLED, "the message did not arrive within the body timeout")
        if body is None:
            self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        return body

    def _take(self, slots: threading.BoundedSemaphore) -> bool:
        """A reading or ingest slot, waiting at most ``queue_timeout`` behind at most ``max_queued`` calls."""
        if slots.acquire(blocking=False):
            return True
        with self._queue_lock:
            if self._queued >= self.options.max_queued:
                return False
            self._queued += 1
        try:
            return slots.acquire(timeout=self.options.queue_timeout)
        finally:
            with self._queue_lock:
                self._queued -= 1

    def _overloaded(self, context: grpc.ServicerContext) -> NoReturn:
        context.set_trailing_metadata(self._retry_metadata)
        self._abort(context, grpc.StatusCode.UNAVAILABLE, "the receiver is overloaded, retry later")

    def _project(self, context: grpc.ServicerContext) -> str | None:
        """The project of the call's bearer token (galtea_otel.serve.projects); None: UNAUTHENTICATED."""
        value = ""
        for key, item in context.invocation_metadata():
            if key == "authorization" and isinstance(item, str):
                value = item
        return self.tokens.project_of_header(value.encode("utf-8", "surrogateescape"))

    def _abort(self, context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
        self.stats[code.name] += 1
        context.abort(code, message)  # raises
        raise AssertionError("unreachable: ServicerContext.abort raises")


GRPC_REFUSERS = 128
READERS_PER_SLOT, EXTRA_READERS = 2, 4  # calls reading their message at once: 2 x max_inflight + 4
MAX_STREAMS_PER_CONNECTION = 32
KEEPALIVE_PING_S = 60
MAX_CONNECTION_AGE_S = 30 * 60


def grpc_options(options: ServeOptions) -> list[tuple[str, int]]:
    """grpcio server options: the message limit, flow control, and the connection limits."""
    return [
        ("grpc.max_receive_message_length", options.max_body_bytes),
        ("grpc.so_reuseport", 0),
        # No BDP probing: the HTTP/2 stream window stays 64 KiB, so an RPC whose message is not read
        # (waiting for a slot, or refused) holds at most that much; a read opens it to the message size.
        ("grpc.http2.bdp_probe", 0),
        # Slow and idle clients: connections that never finish the HTTP/2 handshake, idle ones, old ones.
        ("grpc.max_allowed_incoming_connections", options.max_connections),
        ("grpc.server_handshake_timeout_ms", int(options.header_timeout * 1000)),
        ("grpc.max_connection_idle_ms", int(options.keepalive_timeout * 1000)),
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_S * 1000),
        ("grpc.max_connection_age_grace_ms", int(options.shutdown_grace * 1000)),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        # Keepalive: ping a silent peer every minute, drop it if it does not answer in 20 s; a client may
        # ping every 10 s at most (more often, twice, and its connection is closed).
        ("grpc.keepalive_time_ms", KEEPALIVE_PING_S * 1000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
    ]


def start_grpc_server(
    pipeline: Ingests, options: ServeOptions, address: Address, tokens: Tokens | None = None
) -> tuple[grpc.Server, TraceService, int]:
    """Start the gRPC server on ``address``; returns it, its servicer and the bound port."""
    # Beyond max_inflight + max_queued calls, grpcio would answer RESOURCE_EXHAUSTED without RetryInfo, which OTLP
    # clients do not retry. Extra threads that find the queue full answer UNAVAILABLE + RetryInfo at once (they
    # never read the message), so a burst of up to GRPC_REFUSERS more calls is told to come back, not dropped.
    workers = options.max_inflight + options.max_queued + GRPC_REFUSERS
    server = grpc.server(
        ThreadPoolExecutor(workers, thread_name_prefix="galtea-otel-grpc"),
        maximum_concurrent_rpcs=workers,
        options=grpc_options(options),
    )
    service = TraceService(pipeline, options, tokens)
    handler = grpc.stream_unary_rpc_method_handler(
        service.Export,
        request_deserializer=None,  # raw bytes: parsed only once the RPC holds a slot
        response_serializer=ExportTraceServiceResponse.SerializeToString,
    )
    logs_handler = grpc.stream_unary_rpc_method_handler(
        service.ExportLogs,
        request_deserializer=None,
        response_serializer=ExportLogsServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),
                                     grpc.method_handlers_generic_handler(LOGS_SERVICE, {"Export": logs_handler})))
    port = server.add_insecure_port(str(address))
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    return server, service, port
