"""OTLP/protobuf decoding, on requests made by the real SDK and the real OTLP encoder."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from galtea_otel.decode.common import DecodeError
from galtea_otel.decode.otlp_proto import decode_proto, decode_request
from galtea_otel.decode.sdk import from_sdk

from .samples import llm_spans, proto_body

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")


def _request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )


def _span(trace_id: bytes = TRACE, span_id: bytes = SPAN, parent: bytes = b"", **kw: object) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="s", **kw)  # type: ignore[arg-type]


def test_real_sdk_spans_decode_to_what_the_sdk_holds() -> None:
    spans = llm_spans(sessions=2, turns=3)
    result = decode_proto(proto_body(spans))
    assert result.rejected == 0 and result.errors == []
    assert len(result.spans) == len(spans) == 2 * (1 + 3 * 2)
    decoded = {s.span_id: s for s in result.spans}
    for sdk in spans:
        span = decoded[format(sdk.context.span_id, "016x")]
        assert span.trace_id == format(sdk.context.trace_id, "032x")
        assert span.parent_span_id == (format(sdk.parent.span_id, "016x") if sdk.parent else None)
        assert (span.name, span.start_ns, span.end_ns) == (sdk.name, sdk.start_time, sdk.end_time)
        assert span.status_code == sdk.status.status_code.value
        assert span.status_message == (sdk.status.description or "")
        assert span.attributes == dict(sdk.attributes or {})
        assert span.resource == dict(sdk.resource.attributes)
        assert span.scope == "tests.llm"
        assert [(e.name, e.time_ns, dict(e.attributes)) for e in span.events] == [
            (e.name, e.timestamp, dict(e.attributes or {})) for e in sdk.events
        ]
    llm = next(s for s in result.spans if s.name == "chat gpt-4o #0")
    assert llm.attributes["gen_ai.response.finish_reasons"] == ("stop", "length")
    assert llm.attributes["llm.token_ids"] == (1, 2, 3)
    assert llm.attributes["llm.flags"] == (True, False)
    assert llm.attributes["gen_ai.request.temperature"] == 0.25
    assert any(s.status_code == 2 and s.status_message == "HTTP 500 from the model" for s in result.spans)


def test_same_shape_as_the_in_process_source() -> None:
    """OTLP and the in-process exporter must give the same SpanData: one path downstream."""
    spans = llm_spans(sessions=1, turns=2)
    decoded = {s.span_id: s for s in decode_proto(proto_body(spans)).spans}
    for sdk in spans:
        expected = from_sdk(sdk)
        got = decoded[expected.span_id]
        assert got == expected


def test_empty_body_is_an_empty_request() -> None:
    result = decode_proto(b"")
    assert result.spans == [] and result.rejected == 0


@pytest.mark.parametrize("body", [b"\xff\xff\xff\xff", b'{"resourceSpans": []}', bytes(range(256))])
def test_undecodable_bodies_raise(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_proto(body)


def test_invalid_ids_reject_only_their_span() -> None:
    good = [_span(span_id=bytes([i + 1]) * 8) for i in range(97)]
    bad = [
        _span(trace_id=TRACE[:15]),  # wrong length
        _span(span_id=bytes(8)),  # all zero
        _span(parent=b"\x01\x02\x03"),  # wrong-length parent
    ]
    result = decode_request(_request(*good[:50], *bad, *good[50:]))
    assert result.rejected == 3
    assert len(result.spans) == 97
    assert len(result.errors) == 3
    assert "trace_id" in result.errors[0] and "spans[50]" in result.errors[0]
    assert "span_id" in result.errors[1]
    assert "parent_span_id" in result.errors[2]


def test_zero_parent_and_zero_trace() -> None:
    result = decode_request(_request(_span(parent=bytes(8)), _span(trace_id=bytes(16))))
    assert [s.parent_span_id for s in result.spans] == [None]
    assert result.rejected == 1


def test_timestamps_past_int64_are_rejected() -> None:
    result = decode_request(_request(_span(start_time_unix_nano=1 << 63), _span(end_time_unix_nano=5)))
    assert result.rejected == 1 and [s.end_ns for s in result.spans] == [5]


def test_unknown_status_code_is_unset() -> None:
    span = _span(status=Status(code=7, message="?"))  # type: ignore[arg-type]
    assert decode_request(_request(span)).spans[0].status_code == 0


def test_nested_values_become_json_text() -> None:
    kv = KeyValueList(
        values=[
            KeyValue(key="a", value=AnyValue(int_value=1)),
            KeyValue(key="b", value=AnyValue(bytes_value=b"\x00\x01")),
        ]
    )
    nested = ArrayValue(values=[AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="x")]))])
    mixed = ArrayValue(values=[AnyValue(string_value="x"), AnyValue(int_value=2)])
    attrs = [
        KeyValue(key="kv", value=AnyValue(kvlist_value=kv)),
        KeyValue(key="nested", value=AnyValue(array_value=nested)),
        KeyValue(key="mixed", value=AnyValue(array_value=mixed)),
        KeyValue(key="empty_array", value=AnyValue(array_value=ArrayValue())),
        KeyValue(key="bytes", value=AnyValue(bytes_value=b"\xff")),
        KeyValue(key="unset", value=AnyValue()),
    ]
    span = decode_request(_request(_span(attributes=attrs))).spans[0]
    assert json.loads(str(span.attributes["kv"])) == {"a": 1, "b": "AAE="}
    assert json.loads(str(span.attributes["nested"])) == [["x"]]
    assert json.loads(str(span.attributes["mixed"])) == ["x", 2]
    assert span.attributes["empty_array"] == ()
    assert span.attributes["bytes"] == b"\xff"
    assert span.attributes["unset"] is None
