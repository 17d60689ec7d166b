"""Fuzzing the decoders, fixed budget: whatever comes in, they return a DecodeResult or raise DecodeError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galtea_otel.decode.common import MAX_ERRORS, DecodeError, DecodeResult
from galtea_otel.decode.otlp_json import decode_json
from galtea_otel.decode.otlp_proto import decode_proto

from .samples import encode, json_request, json_span, llm_spans, to_otlp_json

pytestmark = pytest.mark.fuzz  # a fuzzing budget: run with -m fuzz (.ci/run does)

BUDGET = settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

_VALID_PROTO = bytes(encode(llm_spans(sessions=1, turns=2, big=8)).SerializeToString())
_VALID_JSON = to_otlp_json(encode(llm_spans(sessions=1, turns=1, big=8)))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Keys the decoder looks for, so the fuzzer reaches deep into the walk.
otlp_keys = st.sampled_from(
    [
        "traceId",
        "spanId",
        "parentSpanId",
        "name",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "events",
        "status",
        "code",
        "message",
        "key",
        "value",
        "stringValue",
        "intValue",
        "boolValue",
        "doubleValue",
        "bytesValue",
        "arrayValue",
        "kvlistValue",
        "values",
        "timeUnixNano",
        "resource",
        "scopeSpans",
        "spans",
        "scope",
    ]
)
otlp_shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "123", "STATUS_CODE_OK"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(otlp_keys, children, max_size=5),
    max_leaves=30,
)


def _check(decode: Any, body: bytes) -> None:
    try:
        result = decode(body)
    except DecodeError:
        return
    assert isinstance(result, DecodeResult)
    assert len(result.errors) <= min(result.rejected, MAX_ERRORS)
    for span in result.spans:  # whatever got through is valid
        assert len(span.trace_id) == 32 and int(span.trace_id, 16) and span.trace_id == span.trace_id.lower()
        assert len(span.span_id) == 16 and int(span.span_id, 16)
        assert span.parent_span_id is None or len(span.parent_span_id) == 16
        assert 0 <= span.start_ns < 1 << 63 and 0 <= span.end_ns < 1 << 63
        assert span.status_code in (0, 1, 2)


@BUDGET
@given(st.binary(max_size=2048))
def test_random_bytes(body: bytes) -> None:
    _check(decode_proto, body)
    _check(decode_json, body)


@BUDGET
@given(st.data())
def test_mutated_protobuf(data: st.DataObject) -> None:
    body = bytearray(_VALID_PROTO)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            body[position] ^= data.draw(st.integers(1, 255))
        elif action == "delete":
            del body[position : position + data.draw(st.integers(1, 16))]
        else:
            body[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        if not body:
            break
    _check(decode_proto, bytes(body))


@BUDGET
@given(json_values)
def test_arbitrary_json(doc: Any) -> None:
    _check(decode_json, json.dumps(doc).encode())


@BUDGET
@given(otlp_shaped, otlp_shaped, otlp_shaped)
def test_otlp_shaped_json(span_part: Any, attribute_value: Any, resource_part: Any) -> None:
    span = json_span(attributes=[{"key": "k", "value": attribute_value}])
    if isinstance(span_part, dict):
        span.update(span_part)
    doc: Any = json_request(span, span_part)
    if isinstance(resource_part, dict):
        doc["resourceSpans"][0].update(resource_part)
    _check(decode_json, json.dumps(doc).encode())


@BUDGET
@given(st.data())
def test_mutated_real_json(data: st.DataObject) -> None:
    """Replace one node anywhere in a real OTLP/JSON request by an arbitrary value."""
    doc = json.loads(json.dumps(_VALID_JSON))
    node: Any = doc
    for _ in range(data.draw(st.integers(1, 12))):
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], (dict, list)) or data.draw(st.booleans()):
                node[key] = data.draw(otlp_shaped)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            index = data.draw(st.integers(0, len(node) - 1))
            if not isinstance(node[index], (dict, list)) or data.draw(st.booleans()):
                node[index] = data.draw(otlp_shaped)
                break
            node = node[index]
        else:
            break
    _check(decode_json, json.dumps(doc).encode())
