"""OTLP/protobuf ``ExportTraceServiceRequest`` -> :class:`~galtea_otel.spandata.SpanData`.

The receiver's HTTP path calls :func:`decode_proto` on the (decompressed) body; its gRPC path gets the message
already parsed by grpcio and calls :func:`decode_request`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf.message import Error as ProtobufError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from galtea_otel.decode.common import (
    MAX_UINT63,
    DecodeError,
    DecodeResult,
    InvalidSpan,
    homogeneous_array,
    shown,
    to_json_text,
)
from galtea_otel.spandata import AttrValue, EventData, SpanData

__all__ = ["DecodeError", "DecodeResult", "decode_proto", "decode_request"]

_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


def decode_proto(body: bytes) -> DecodeResult:
    """Decode a serialized ``ExportTraceServiceRequest``; raise :class:`DecodeError` if it is not one."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (ProtobufError, ValueError, RecursionError) as exc:
        raise DecodeError(f"not an OTLP/protobuf ExportTraceServiceRequest: {exc}") from None
    return decode_request(request)


def decode_request(request: ExportTraceServiceRequest) -> DecodeResult:
    """Walk a parsed request into spans; spans with invalid ids or timestamps are rejected and counted."""
    result = DecodeResult()
    spans = result.spans
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name
            for i, span in enumerate(scope_spans.spans):
                try:
                    trace_id = span.trace_id
                    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                        raise InvalidSpan(f"invalid trace_id {shown(trace_id)} (want 16 non-zero bytes)")
                    span_id = span.span_id
                    if len(span_id) != 8 or span_id == _ZERO_SPAN:
                        raise InvalidSpan(f"invalid span_id {shown(span_id)} (want 8 non-zero bytes)")
                    parent = span.parent_span_id
                    if parent and len(parent) != 8:
                        raise InvalidSpan(f"invalid parent_span_id {shown(parent)} (want 8 bytes or none)")
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    if start >= MAX_UINT63 or end >= MAX_UINT63:
                        raise InvalidSpan("timestamp out of range")
                    status = span.status
                    code = status.code
                    attributes = span.attributes  # each read of a repeated field builds its container anew
                    events = span.events
                    spans.append(
                        SpanData(
                            trace_id=trace_id.hex(),
                            span_id=span_id.hex(),
                            parent_span_id=parent.hex() if parent and parent != _ZERO_SPAN else None,
                            name=span.name,
                            start_ns=start,
                            end_ns=end,
                            status_code=code if 0 <= code <= 2 else 0,
                            status_message=status.message,
                            attributes=_attributes(attributes) if attributes else {},
                            events=tuple(
                                EventData(
                                    event.name,
                                    event.time_unix_nano,
                                    _attributes(event.attributes) if event.attributes else {},
                                )
                                for event in events
                            )
                            if events
                            else (),
                            resource=resource,
                            scope=scope,
                        )
                    )
                except InvalidSpan as exc:
                    result.reject(f"resource_spans[{r}].scope_spans[{s}].spans[{i}]", str(exc))
    return result


def _attributes(kvs: Iterable[KeyValue]) -> dict[str, AttrValue]:
    out: dict[str, AttrValue] = {}
    for kv in kvs:
        value = kv.value
        # The common kinds inline; the rest through _value. A non-empty string_value is the value set (the other
        # members of the oneof read as ""), so strings skip WhichOneof, the costlier call.
        text = value.string_value
        if text:
            out[kv.key] = text
            continue
        kind = value.WhichOneof("value")
        if kind == "string_value":
            out[kv.key] = text
        elif kind == "int_value":
            out[kv.key] = value.int_value
        else:
            out[kv.key] = _value(value, kind)
    return out


def _value(value: AnyValue, kind: str | None) -> Any:
    """An AnyValue as an attribute value: arrays of one scalar type as tuples, else JSON."""
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    if kind == "array_value":
        return homogeneous_array([_plain(item) for item in value.array_value.values])
    if kind == "kvlist_value":
        return to_json_text(_plain(value))
    return None  # unset, or a kind traces do not use (string_value_strindex)


def _plain(value: AnyValue) -> Any:
    """An AnyValue as plain JSON-able Python (nested arrays -> lists, kvlists -> dicts)."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return _value(value, kind)
