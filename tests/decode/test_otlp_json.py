"""OTLP/JSON decoding: the real SDK's requests in OTLP/JSON, and hand-written documents for the edge cases."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest

from galtea_otel.decode.common import DecodeError
from galtea_otel.decode.otlp_json import decode_json
from galtea_otel.decode.otlp_proto import decode_proto

from .samples import encode, json_request, json_span, llm_spans


def _decode(doc: Any) -> Any:
    return decode_json(json.dumps(doc).encode())


def test_same_spans_as_protobuf() -> None:
    request = encode(llm_spans(sessions=2, turns=2))
    from .samples import to_otlp_json

    from_json = decode_json(json.dumps(to_otlp_json(request)).encode())
    from_proto = decode_proto(request.SerializeToString())
    assert from_json.rejected == 0
    assert from_json.spans == from_proto.spans


def test_specification_example_with_upper_case_hex() -> None:
    result = _decode(json_request(json_span(parent="")))
    assert result.rejected == 0
    (span,) = result.spans
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174"
    assert span.parent_span_id is None
    assert (span.start_ns, span.end_ns) == (1544712660000000000, 1544712661000000000)
    assert span.attributes == {"my.span.attr": "some value"}
    assert span.resource == {"service.name": "my.service"}
    assert span.scope == "my.library"


def test_lower_and_mixed_case_hex() -> None:
    result = _decode(
        json_request(json_span(trace_id="5b8efff798038103D269B633813FC60C", parent="aBcDeF0123456789"))
    )
    assert result.spans[0].trace_id == "5b8efff798038103d269b633813fc60c"
    assert result.spans[0].parent_span_id == "abcdef0123456789"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ({"code": 2, "message": "boom"}, 2),
        ({"code": 1}, 1),
        ({"code": "STATUS_CODE_ERROR"}, 2),
        ({}, 0),
        ({"code": "2"}, 2),
        ({"code": 9}, 0),
    ],
)
def test_status_codes_as_integers_or_names(status: dict[str, Any], code: int) -> None:
    span = _decode(json_request(json_span(status=status))).spans[0]
    assert span.status_code == code
    assert span.status_message == status.get("message", "")


def test_int64_as_strings_or_numbers_and_every_value_kind() -> None:
    attrs = [
        {"key": "s", "value": {"stringValue": "x"}},
        {"key": "i_str", "value": {"intValue": "-9007199254740993"}},
        {"key": "i_num", "value": {"intValue": 42}},
        {"key": "b", "value": {"boolValue": True}},
        {"key": "d", "value": {"doubleValue": 1.5}},
        {"key": "d_int", "value": {"doubleValue": 3}},
        {"key": "nan", "value": {"doubleValue": "NaN"}},
        {"key": "inf", "value": {"doubleValue": "-Infinity"}},
        {"key": "bytes", "value": {"bytesValue": base64.b64encode(b"\x00\xff").decode()}},
        {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": 2}]}}},
        {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}}},
        {"key": "empty", "value": {}},
    ]
    span = _decode(json_request(json_span(attributes=attrs, startTimeUnixNano=1544712660000000000))).spans[0]
    a = span.attributes
    assert a["s"] == "x" and a["i_str"] == -9007199254740993 and a["i_num"] == 42 and a["b"] is True
    assert a["d"] == 1.5 and a["d_int"] == 3.0 and isinstance(a["d_int"], float)
    assert math.isnan(float(a["nan"])) and a["inf"] == -math.inf
    assert a["bytes"] == b"\x00\xff" and a["arr"] == (1, 2)
    assert json.loads(str(a["kv"])) == {"k": False}
    assert a["empty"] is None
    assert span.start_ns == 1544712660000000000


def test_unknown_fields_are_ignored_everywhere() -> None:
    doc = json_request(
        json_span(
            futureField={"x": [1, 2]},
            events=[
                {"timeUnixNano": "5", "name": "e", "attributes": [], "droppedAttributesCount": 0, "new": 1}
            ],
            links=[{"traceId": "zz", "spanId": "not validated: links are not decoded"}],
            status={"code": 0, "newStatusField": True},
        )
    )
    doc["futureTopLevel"] = True
    doc["resourceSpans"][0]["schemaUrl"] = "https://opentelemetry.io/schemas/1.26.0"
    doc["resourceSpans"][0]["scopeSpans"][0]["newScopeField"] = {}
    result = _decode(doc)
    assert result.rejected == 0
    assert result.spans[0].events[0].name == "e" and result.spans[0].events[0].time_ns == 5


def test_snake_case_keys_are_accepted() -> None:
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "scope": {"name": "lib"},
                        "spans": [
                            {
                                "trace_id": "5b8efff798038103d269b633813fc60c",
                                "span_id": "eee19b7ec3c1b174",
                                "parent_span_id": "0102030405060708",
                                "start_time_unix_nano": "10",
                                "end_time_unix_nano": "20",
                                "attributes": [{"key": "n", "value": {"int_value": "7"}}],
                            }
                        ],
                    }
                ]
            }
        ]
    }
    (span,) = _decode(doc).spans
    assert (span.parent_span_id, span.start_ns, span.end_ns, span.attributes) == (
        "0102030405060708",
        10,
        20,
        {"n": 7},
    )


def test_100_spans_with_3_bad_ids_rejects_3() -> None:
    good = [json_span(span_id=f"{i + 1:016x}") for i in range(97)]
    base64_trace = base64.b64encode(bytes.fromhex("5b8efff798038103d269b633813fc60c")).decode()
    bad = [
        json_span(trace_id=base64_trace),  # the generic protobuf JSON mapping: base64, not hex
        json_span(span_id="eee19b7ec3c1b1"),  # 14 hex characters
        json_span(trace_id="0" * 32),  # all zero
    ]
    result = _decode(json_request(*good[:10], bad[0], *good[10:60], bad[1], *good[60:], bad[2]))
    assert result.rejected == 3
    assert len(result.spans) == 97
    assert len(result.errors) == 3
    assert "traceId" in result.errors[0] and "spans[10]" in result.errors[0]
    assert "spanId" in result.errors[1]
    assert "all zero" in result.errors[2]


@pytest.mark.parametrize(
    "span_change",
    [
        {"traceId": None},
        {"spanId": 12345},
        {"parentSpanId": "xyz"},
        {"startTimeUnixNano": "-5"},
        {"endTimeUnixNano": "1e9"},
        {"startTimeUnixNano": str(1 << 63)},
        {"attributes": {"not": "a list"}},
        {"attributes": [{"key": "i", "value": {"intValue": "12.5"}}]},
        {"attributes": [{"key": "i", "value": {"intValue": str(1 << 63)}}]},
        {"attributes": [{"key": 5, "value": {"stringValue": "x"}}]},
        {"attributes": ["not an object"]},
        {"attributes": [{"key": "b", "value": {"boolValue": "true"}}]},
        {"events": [{"timeUnixNano": "x"}]},
        {"status": {"code": "STATUS_CODE_MAYBE"}},
        {"name": ["not", "a", "string"]},
    ],
)
def test_malformed_spans_are_rejected_alone(span_change: dict[str, Any]) -> None:
    result = _decode(json_request(json_span(span_id="0000000000000001"), json_span(**span_change)))
    assert result.rejected == 1, result.spans
    assert [s.span_id for s in result.spans] == ["0000000000000001"]
    assert result.errors and "spans[1]" in result.errors[0]


def test_not_a_span_object_is_rejected() -> None:
    result = _decode(json_request(json_span(), "a string", 5))  # type: ignore[arg-type]
    assert (len(result.spans), result.rejected) == (1, 2)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'"string"',
        b'{"resourceSpans": {}}',
        b'{"resourceSpans": [5]}',
        b'{"resourceSpans": [{"scopeSpans": "x"}]}',
        b'{"resourceSpans": [{"resource": {"attributes": 5}}]}',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000,
    ],
)
def test_undecodable_bodies_raise(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_json(body)


def test_empty_body_and_empty_object_are_empty_requests() -> None:
    assert decode_json(b"").spans == []
    assert decode_json(b"{}").spans == []
    assert decode_json(b'{"resourceSpans": []}').rejected == 0


def test_zero_parent_means_root() -> None:
    assert _decode(json_request(json_span(parent="0" * 16))).spans[0].parent_span_id is None


def _with_huge_numbers() -> bytes:
    """3 spans: one good, one with a 5,000-digit intValue, one with a 5,000-digit start time (bare JSON
    numbers, which Python's int() refuses past 4,300 digits), and a 5,000-digit resource attribute elsewhere."""
    good = json_span(span_id=f"{1:016x}", name="good")
    bad_attr = json_span(span_id=f"{2:016x}", name="bad attribute")
    bad_attr["attributes"] = [{"key": "n", "value": {"intValue": "HUGE"}}]
    bad_time = json_span(span_id=f"{3:016x}", name="bad time")
    bad_time["startTimeUnixNano"] = "HUGE"
    huge = "9" * 5000
    return json.dumps(json_request(good, bad_attr, bad_time)).replace('"HUGE"', huge).encode()


def test_a_huge_json_number_rejects_its_span_not_the_request() -> None:
    result = decode_json(_with_huge_numbers())
    assert [span.name for span in result.spans] == ["good"]
    assert result.rejected == 2
    assert "5000-digit number" in result.errors[0] and "spans[1]" in result.errors[0]
    assert "spans[2]" in result.errors[1]


def test_a_huge_number_in_a_resource_rejects_that_resource_s_spans() -> None:
    doc = json_request(json_span(span_id=f"{1:016x}"), json_span(span_id=f"{2:016x}"))
    doc["resourceSpans"][0]["resource"] = {"attributes": [{"key": "n", "value": {"intValue": "HUGE"}}]}
    other = json_request(json_span(span_id=f"{3:016x}", name="other resource"))
    doc["resourceSpans"].append(other["resourceSpans"][0])
    result = decode_json(json.dumps(doc).replace('"HUGE"', "1" * 5000).encode())
    assert [span.name for span in result.spans] == ["other resource"]
    assert result.rejected == 2
