"""One OTLP request, from body to acknowledgement, shared by the HTTP and gRPC front ends.

decompress (bounded) -> decode -> ``pipeline.ingest`` (which commits) -> an :class:`Outcome` saying what to
answer. Everything here is blocking: the HTTP front end runs it in a worker thread, grpcio in its own. The
receiver's ``pipeline`` is its group commit writer (galtea_otel.serve.writer): ``ingest`` translates in this
thread, then waits for the one transaction that stores this request's rows with those of the requests waiting
with it.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from galtea_otel.decode.common import DecodeError, DecodeResult
from galtea_otel.decode.otlp_json import decode_json
from galtea_otel.decode.otlp_proto import decode_proto
from galtea_otel.pipeline import IngestResult
from galtea_otel.serve.writer import StoreUnavailable
from galtea_otel.spandata import SpanData
from galtea_otel.translate.row import DEFAULT_PROJECT

log = logging.getLogger("galtea_otel.serve")

Format = Literal["proto", "json"]
Encoding = Literal["identity", "gzip", "deflate"]

MAX_MESSAGE_CHARS = 2000

# google.rpc.Code values used in Status bodies.
RPC_INVALID_ARGUMENT = 3
RPC_RESOURCE_EXHAUSTED = 8
RPC_UNAVAILABLE = 14
RPC_UNAUTHENTICATED = 16
_RPC_CODE_OF_HTTP = {
    400: RPC_INVALID_ARGUMENT,
    401: RPC_UNAUTHENTICATED,
    413: RPC_RESOURCE_EXHAUSTED,
    415: RPC_INVALID_ARGUMENT,
    503: RPC_UNAVAILABLE,
}


class Ingests(Protocol):
    """What the receiver needs of a pipeline: :meth:`galtea_otel.pipeline.Pipeline.ingest`."""

    def ingest(self, spans: Sequence[SpanData], project: str = ...) -> IngestResult: ...


class BodyTooLarge(Exception):
    """The body, after decompression, is larger than the limit."""


@dataclass(frozen=True)
class Outcome:
    """What to answer: ``status`` 200 (with ``rejected`` spans and a ``message`` for a partial success), 400,
    413 or 503."""

    status: int
    rejected: int = 0
    message: str = ""


def decompress_bounded(data: bytes, encoding: Encoding, limit: int) -> bytes:
    """Inflate ``data``, never past ``limit`` bytes of output: a gzip bomb costs at most ``limit`` of memory.

    Raises :class:`BodyTooLarge` past the limit and :class:`DecodeError` for a corrupt or truncated stream.
    Concatenated gzip members are accepted, as ``gzip`` does.
    """
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    parts: list[bytes] = []
    total = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise DecodeError(f"corrupt {encoding} body: {exc}") from None
        total += len(part)
        if total > limit:
            raise BodyTooLarge
        parts.append(part)
        if not inflater.eof:  # all input consumed below the limit, yet the stream did not end
            raise DecodeError(f"truncated {encoding} body")
        data = inflater.unused_data
        if not data:
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


def process(pipeline: Ingests, body: bytes, fmt: Format, encoding: Encoding, limit: int,
            project: str = DEFAULT_PROJECT, logs: bool = False) -> Outcome:
    """Decompress, decode and ingest one request body; the answer is 200 only once ``ingest`` has returned."""
    try:
        if encoding != "identity":
            body = decompress_bounded(body, encoding, limit)
        elif len(body) > limit:
            raise BodyTooLarge
        if logs:  # issue 11: OTLP logs carrying evaluations
            from galtea_otel.decode.otlp_logs import decode_logs_json, decode_logs_proto

            decoded = decode_logs_proto(body) if fmt == "proto" else decode_logs_json(body)
        else:
            decoded = decode_proto(body) if fmt == "proto" else decode_json(body)
    except BodyTooLarge:
        return Outcome(413, message=f"the request body is larger than {limit} bytes (after decompression)")
    except DecodeError as exc:
        log.info("400: undecodable OTLP/%s body: %s", fmt, exc)
        return Outcome(400, message=str(exc)[:MAX_MESSAGE_CHARS])
    return ingest_decoded(pipeline, decoded, project)


def ingest_decoded(pipeline: Ingests, decoded: DecodeResult, project: str = DEFAULT_PROJECT) -> Outcome:
    """Ingest decoded spans. A failing store answers 503: the client retries, nothing acknowledged is lost."""
    rejected = decoded.rejected
    errors = list(decoded.errors)
    if decoded.spans:
        try:
            # The project is the authenticated token's (galtea_otel.serve.projects); the default one's spans go
            # through the call an older pipeline takes.
            result = pipeline.ingest(decoded.spans, project) if project != DEFAULT_PROJECT \
                else pipeline.ingest(decoded.spans)
        except StoreUnavailable as exc:  # the group commit writer logged the failed transaction's traceback once
            log.warning("ingest failed for %d spans (%s); answering 503", len(decoded.spans), exc)
            return Outcome(503, message="the store is unavailable, retry later")
        except Exception:
            # Not acknowledged, so the client keeps the spans and retries; the traceback is for the operator.
            log.exception("ingest failed for %d spans; answering 503", len(decoded.spans))
            return Outcome(503, message="the store is unavailable, retry later")
        rejected += result.rejected
        errors.extend(result.errors)
    if rejected:
        message = f"{rejected} span(s) rejected: " + "; ".join(errors)
        log.info("partial success: %s", message[:MAX_MESSAGE_CHARS])
        return Outcome(200, rejected=rejected, message=message[:MAX_MESSAGE_CHARS])
    return Outcome(200)


# --------------------------------------------------------------------------------------------------- bodies


def success_body(fmt: Format, outcome: Outcome) -> bytes:
    """An ``ExportTraceServiceResponse``, with ``partial_success`` when spans were rejected."""
    if fmt == "json":
        if not outcome.rejected:
            return b"{}"
        partial = {"rejectedSpans": str(outcome.rejected), "errorMessage": outcome.message}
        return json.dumps({"partialSuccess": partial}, ensure_ascii=False).encode()
    if not outcome.rejected:
        return b""  # an empty ExportTraceServiceResponse
    return bytes(export_response(outcome).SerializeToString())


def export_response(outcome: Outcome) -> ExportTraceServiceResponse:
    """The protobuf ``ExportTraceServiceResponse`` for an outcome (also what the gRPC service returns)."""
    if not outcome.rejected:
        return ExportTraceServiceResponse()
    partial = ExportTracePartialSuccess(rejected_spans=outcome.rejected, error_message=outcome.message)
    return ExportTraceServiceResponse(partial_success=partial)


def status_body(fmt: Format, http_status: int, message: str) -> bytes:
    """A ``google.rpc.Status`` body, the OTLP error response, in the request's format."""
    code = _RPC_CODE_OF_HTTP.get(http_status, 2)  # 2: UNKNOWN
    if fmt == "json":
        return json.dumps({"code": code, "message": message}, ensure_ascii=False).encode()
    return bytes(Status(code=code, message=message).SerializeToString())
