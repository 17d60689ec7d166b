"""OTLP/gRPC ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on grpcio.

grpcio enforces the size limit (``grpc.max_receive_message_length``, after decompression: RESOURCE_EXHAUSTED)
and gzip. The servicer checks the token (UNAUTHENTICATED), takes one of ``max_inflight`` slots or answers
UNAVAILABLE with a ``RetryInfo`` after ``queue_timeout``, and returns only after ``ingest`` committed.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from galtea_otel.decode.otlp_proto import decode_request
from galtea_otel.serve.ingest import Ingests, export_response, ingest_decoded
from galtea_otel.serve.options import Address, ServeOptions

log = logging.getLogger("galtea_otel.serve")


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """The Export RPC. ``stats`` counts answers by gRPC status code name."""

    def __init__(self, pipeline: Ingests, options: ServeOptions) -> None:
        self.pipeline = pipeline
        self.options = options
        self.stats: Counter[str] = Counter()
        self._expected = f"Bearer {options.token}".encode() if options.token else None
        self._slots = threading.BoundedSemaphore(options.max_inflight)
        retry = RetryInfo(retry_delay=Duration(seconds=options.retry_after_seconds))
        self._retry_metadata = (("google.rpc.retryinfo-bin", retry.SerializeToString()),)

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        if self._expected is not None and not self._authorized(context):
            self._abort(context, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        if not self._slots.acquire(timeout=self.options.queue_timeout):
            context.set_trailing_metadata(self._retry_metadata)
            self._abort(context, grpc.StatusCode.UNAVAILABLE, "the receiver is overloaded, retry later")
        try:
            outcome = ingest_decoded(self.pipeline, decode_request(request))
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

    def _abort(self, context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
        self.stats[code.name] += 1
        context.abort(code, message)  # raises


def start_grpc_server(
    pipeline: Ingests, options: ServeOptions, address: Address
) -> tuple[grpc.Server, TraceService, int]:
    """Start the gRPC server on ``address``; returns it, its servicer and the bound port."""
    workers = options.max_inflight + options.max_queued
    server = grpc.server(
        ThreadPoolExecutor(workers, thread_name_prefix="galtea-otel-grpc"),
        maximum_concurrent_rpcs=workers,
        options=[
            ("grpc.max_receive_message_length", options.max_body_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    service = TraceService(pipeline, options)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(str(address))
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    return server, service, port
