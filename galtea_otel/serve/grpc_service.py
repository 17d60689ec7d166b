"""OTLP/gRPC ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on grpcio.

grpcio enforces the size limit (``grpc.max_receive_message_length``, after decompression: RESOURCE_EXHAUSTED)
and gzip. The servicer checks the token (UNAUTHENTICATED), takes one of ``max_inflight`` slots or answers
UNAVAILABLE with a ``RetryInfo`` after ``queue_timeout``, and returns only after ``ingest`` committed.

Memory under a slow store (RELIABILITY 5): ``Export`` is registered as a *client-streaming* method taking raw
bytes. The wire format is the same as unary (one length-prefixed message, then end of stream), so every
client's unary call works unchanged, but grpcio invokes the handler on the call's headers and reads the message
only when the handler asks for it: after the token check and once the RPC holds a slot. (A unary handler gets
its message already read and parsed: every waiting RPC held its whole body.) With HTTP/2 BDP probing off,
an RPC whose message is not read holds at most its stream window, 64 KiB, in grpcio's transport.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from galtea_otel.decode.otlp_proto import DecodeError, decode_proto
from galtea_otel.serve.ingest import MAX_MESSAGE_CHARS, Ingests, export_response, ingest_decoded
from galtea_otel.serve.options import Address, ServeOptions

log = logging.getLogger("galtea_otel.serve")


SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class TraceService:
    """The Export RPC (raw request bytes in). ``stats`` counts answers by gRPC status code name."""

    def __init__(self, pipeline: Ingests, options: ServeOptions) -> None:
        self.pipeline = pipeline
        self.options = options
        self.stats: Counter[str] = Counter()
        self._expected = f"Bearer {options.token}".encode() if options.token else None
        self._slots = threading.BoundedSemaphore(options.max_inflight)
        retry = RetryInfo(retry_delay=Duration(seconds=options.retry_after_seconds))
        self._retry_metadata = (("google.rpc.retryinfo-bin", retry.SerializeToString()),)

    def Export(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        if self._expected is not None and not self._authorized(context):
            self._abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        if not self._slots.acquire(timeout=self.options.queue_timeout):
            context.set_trailing_metadata(self._retry_metadata)
            self._abort(context, grpc.StatusCode.UNAVAILABLE, "the receiver is overloaded, retry later")
        try:
            body = next(requests, None)  # only now does grpcio read the message
            if body is None:
                self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, "no request message")
            try:
                decoded = decode_proto(body)
            except DecodeError as exc:
                self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc)[:MAX_MESSAGE_CHARS])
            del body
            outcome = ingest_decoded(self.pipeline, decoded)
        finally:
            self._slots.release()
        if outcome.status != 200:  # the store failed: let the client retry
            context.set_trailing_metadata(self._retry_metadata)
            self._abort(context, grpc.StatusCode.UNAVAILABLE, outcome.message)
        self.stats["OK"] += 1
        return export_response(outcome)

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        assert self._expected is not None
        value = ""
        for key, item in context.invocation_metadata():
            if key == "authorization" and isinstance(item, str):
                value = item
        scheme, _, token = value.strip().partition(" ")
        same = hmac.compare_digest(f"{scheme.capitalize()} {token.strip()}".encode(), self._expected)
        return same

    def _abort(self, context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
        self.stats[code.name] += 1
        context.abort(code, message)  # raises
        raise AssertionError("unreachable: ServicerContext.abort raises")


GRPC_REFUSERS = 128


def start_grpc_server(
    pipeline: Ingests, options: ServeOptions, address: Address
) -> tuple[grpc.Server, TraceService, int]:
    """Start the gRPC server on ``address``; returns it, its servicer and the bound port."""
    # Beyond max_inflight + max_queued calls, grpcio would answer RESOURCE_EXHAUSTED without RetryInfo, which OTLP
    # clients do not retry. Extra threads that find the queue full answer UNAVAILABLE + RetryInfo at once (they
    # never read the message), so a burst of up to GRPC_REFUSERS more calls is told to come back, not dropped.
    workers = options.max_inflight + options.max_queued + GRPC_REFUSERS
    server = grpc.server(
        ThreadPoolExecutor(workers, thread_name_prefix="galtea-otel-grpc"),
        maximum_concurrent_rpcs=workers,
        options=[
            ("grpc.max_receive_message_length", options.max_body_bytes),
            ("grpc.so_reuseport", 0),
            # No BDP probing: the HTTP/2 stream window stays 64 KiB, so an RPC whose message is not read
            # (waiting for a slot, or refused) holds at most that much; a read opens it to the message size.
            ("grpc.http2.bdp_probe", 0),
        ],
    )
    service = TraceService(pipeline, options)
    handler = grpc.stream_unary_rpc_method_handler(
        service.Export,
        request_deserializer=None,  # raw bytes: parsed only once the RPC holds a slot
        response_serializer=ExportTraceServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
    port = server.add_insecure_port(str(address))
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    return server, service, port
