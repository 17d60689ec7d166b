"""RELIABILITY 19 (issue 4, point 6): fuzzing the running receiver over HTTP, and the translator, for a fixed
budget (hypothesis, derandomized: the same examples in every run).

- The receiver: random bodies, content types and encodings (truncated gzip, valid gzip of garbage, gzip that
  inflates past the limit, OTLP protobuf built with random fields, byte-mutated protobuf, JSON of random
  structure and OTLP-shaped JSON): every answer is 200 / 400 / 413 / 415 with a well-formed body, within a
  client timeout (no hang), nothing logged as an error, and the receiver still serves a good request after.
- The translator: random attribute maps (keys of the conventions table mixed with random keys; values of
  every OTLP type, huge integers, NaN, lone surrogates, NUL, nested lists and maps, JSON text) ->
  ``translate()`` returns a SpanRow or raises InvalidSpan, nothing else, and ``Pipeline.ingest`` commits it
  (SQLite and PostgreSQL) with the records still readable.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.rpc.status_pb2 import Status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from galtea_otel.decode.common import homogeneous_array, to_json_text
from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.spandata import EventData, SpanData
from galtea_otel.store import open_store
from galtea_otel.translate import conventions as C
from galtea_otel.translate.row import SpanRow
from galtea_otel.translate.translator import InvalidSpan, translate

from ..decode.samples import llm_spans, proto_body, to_otlp_json
from ..decode.test_fuzz import json_values, otlp_shaped

LIMIT = 256 * 1024
EXAMPLES = int(os.environ.get("GALTEA_OTEL_FUZZ_EXAMPLES", "300"))
BUDGET = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 300,  # the CI budget: the same examples every run; more: new ones each time
    database=None,
    suppress_health_check=list(HealthCheck),
)
ALLOWED = {200, 400, 413, 415}


class _Errors(logging.Handler):
    """Collects every record at ERROR or above (the receiver logs a failed ingest or an app crash so)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, _Errors]]:
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("galtea_otel", "uvicorn", "uvicorn.error", "grpc")]
    for logger in loggers:
        logger.addHandler(errors)
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}")
    local = Address("127.0.0.1", 0)
    options = ServeOptions(http=local, grpc=None, max_body_bytes=LIMIT, sweep_interval=3600.0, shutdown_grace=5.0)
    try:
        with start_in_thread(options, Pipeline(store)) as receiver:
            yield receiver, errors
    finally:
        store.close()
        for logger in loggers:
            logger.removeHandler(errors)


# --- bodies ----------------------------------------------------------------------------------------------------

_texts = st.text(max_size=30)


@st.composite
def _any_values(draw: st.DrawFn, depth: int = 0) -> AnyValue:
    kinds = ["string", "bool", "int", "double", "bytes", "empty"] + (["array", "kvlist"] if depth < 3 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "string":
        return AnyValue(string_value=draw(_texts))
    if kind == "bool":
        return AnyValue(bool_value=draw(st.booleans()))
    if kind == "int":
        return AnyValue(int_value=draw(st.integers(-(1 << 63), (1 << 63) - 1)))
    if kind == "double":
        return AnyValue(double_value=draw(st.floats()))
    if kind == "bytes":
        return AnyValue(bytes_value=draw(st.binary(max_size=20)))
    if kind == "empty":
        return AnyValue()
    items = draw(st.lists(_any_values(depth + 1), max_size=4))
    if kind == "array":
        value = AnyValue()
        value.array_value.values.extend(items)
        return value
    value = AnyValue()
    value.kvlist_value.values.extend(KeyValue(key=draw(_texts), value=item) for item in items)
    return value


_keys = st.sampled_from(sorted(set(C.CONSUMED_KEYS))) | _texts


@st.composite
def _key_values(draw: st.DrawFn) -> list[KeyValue]:
    return [KeyValue(key=draw(_keys), value=draw(_any_values())) for _ in range(draw(st.integers(0, 6)))]


_ids = {
    16: st.binary(min_size=16, max_size=16) | st.binary(max_size=20) | st.just(bytes(16)),
    8: st.binary(min_size=8, max_size=8) | st.binary(max_size=10) | st.just(bytes(8)),
}
_u64 = st.integers(0, (1 << 64) - 1) | st.integers(1_700_000_000 * 10**9, 1_800_000_000 * 10**9)


@st.composite
def otlp_protobuf(draw: st.DrawFn) -> bytes:
    """A real ``ExportTraceServiceRequest`` whose every field is drawn at random."""
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(draw(_key_values()))
        for _ in range(draw(st.integers(0, 2))):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = draw(_texts)
            for _ in range(draw(st.integers(0, 4))):
                span = scope_spans.spans.add()
                span.trace_id = draw(_ids[16])
                span.span_id = draw(_ids[8])
                span.parent_span_id = draw(st.just(b"") | _ids[8])
                span.name = draw(_texts)
                span.kind = draw(st.integers(-(1 << 31), (1 << 31) - 1))
                span.start_time_unix_nano = draw(_u64)
                span.end_time_unix_nano = draw(_u64)
                span.attributes.extend(draw(_key_values()))
                span.status.code = draw(st.integers(-(1 << 31), (1 << 31) - 1))
                span.status.message = draw(_texts)
                for _ in range(draw(st.integers(0, 2))):
                    event = span.events.add()
                    event.name = draw(st.sampled_from(["exception", "gen_ai.content.prompt"]) | _texts)
                    event.time_unix_nano = draw(_u64)
                    event.attributes.extend(draw(_key_values()))
    return bytes(request.SerializeToString())


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    body = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 6))):
        if not body:
            break
        position = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            body[position] ^= draw(st.integers(1, 255))
        elif action == "delete":
            del body[position : position + draw(st.integers(1, 8))]
        else:
            body[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(body)


def _json_of_proto(body: bytes) -> bytes:
    return json.dumps(to_otlp_json(ExportTraceServiceRequest.FromString(body))).encode()


json_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    otlp_shaped.map(lambda v: json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [v]}]}]}).encode()),
    otlp_protobuf().map(_json_of_proto),
    mutated(otlp_protobuf().map(_json_of_proto)),
)
raw_bodies = st.one_of(
    st.binary(max_size=2048),
    otlp_protobuf(),
    mutated(otlp_protobuf()),
    json_bodies,
    st.integers(LIMIT - 8, LIMIT + 8).map(lambda n: b"\x0a" * n),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-protobuf",
        "application/json",
        "application/protobuf",
        "application/json; charset=utf-8",
        "APPLICATION/X-PROTOBUF",
        "text/plain",
        "application/xml",
        "",
        None,
    ]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
ENCODINGS = st.sampled_from([None, "gzip", "deflate", "identity", "x-gzip", "GZIP", "br", "gzip, br", "zstd", ""])


@st.composite
def requests_(draw: st.DrawFn) -> tuple[bytes, str | None, str | None]:
    body = draw(raw_bodies)
    encoding = draw(ENCODINGS)
    wrap = draw(st.sampled_from(["as-is", "gzip", "deflate", "truncated-gzip", "gzip-bomb", "gzip-twice"]))
    if wrap == "gzip":
        body = gzip.compress(body)
    elif wrap == "deflate":
        body = zlib.compress(body)
    elif wrap == "truncated-gzip":
        body = gzip.compress(body)[: draw(st.integers(0, 30))]
    elif wrap == "gzip-bomb":
        body = gzip.compress(b"\x00" * (LIMIT + draw(st.integers(1, 4 << 20))), 9)
    elif wrap == "gzip-twice":
        body = gzip.compress(gzip.compress(body))
    if wrap != "as-is" and draw(st.booleans()):
        encoding = "deflate" if wrap == "deflate" else "gzip"  # mostly: the header matches the body
    return body, draw(CONTENT_TYPES), encoding


def _send(receiver: Receiver, body: bytes, content_type: str | None, encoding: str | None) -> tuple[int, str, bytes]:
    """One POST with a plain client and a 30 s timeout (a hang fails the test); (status, content type, body)."""
    assert receiver.http_address is not None
    conn = http.client.HTTPConnection(receiver.http_address.host, receiver.http_address.port, timeout=30)
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    try:
        conn.request("POST", "/v1/traces", body, headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def _check_body(status: int, content_type: str, body: bytes) -> None:
    """The answer's body is what OTLP says: an ExportTraceServiceResponse (200) or a google.rpc.Status."""
    if content_type == "application/json":
        doc = json.loads(body)
        assert isinstance(doc, dict)
        if status != 200:
            assert doc["code"] in (3, 8) and doc["message"]
    elif content_type == "application/x-protobuf":
        if status == 200:
            ExportTraceServiceResponse.FromString(body)
        else:
            parsed = Status.FromString(body)
            assert parsed.code in (3, 8) and parsed.message
    else:
        assert content_type.startswith("text/plain") and status == 415


@pytest.mark.fuzz
def test_fuzz_the_running_receiver_over_http(fuzzed: tuple[Receiver, _Errors]) -> None:
    """RELIABILITY 19: 300 random requests to a running receiver: each answered 200 / 400 / 413 / 415 with a
    well-formed OTLP body within 30 s, no error logged; then a good request still gets 200."""
    receiver, errors = fuzzed
    seen: set[int] = set()

    @BUDGET
    @given(requests_())
    def one(request: tuple[bytes, str | None, str | None]) -> None:
        body, content_type, encoding = request
        status, answer_type, answer = _send(receiver, body, content_type, encoding)
        assert status in ALLOWED, (status, answer, content_type, encoding, body[:200])
        _check_body(status, answer_type, answer)
        seen.add(status)

    one()
    assert not errors.records, [r.getMessage() for r in errors.records[:5]]
    assert receiver.app is not None
    assert set(receiver.app.stats) <= ALLOWED, dict(receiver.app.stats)
    assert seen == ALLOWED, seen  # the budget reached every answer
    assert _send(receiver, proto_body(llm_spans(1, 1)), "application/x-protobuf", "identity")[0] == 200


# --- the translator ----------------------------------------------------------------------------------------------


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(k) | _strings(v) for k, v in value.items())) if value else set()
    if isinstance(value, (tuple, list, set, frozenset)):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


# Every string of the conventions table: its keys, the values it matches (span kinds, "chat", "ERROR"...) and
# the fields it reads in JSON attributes; plus flattened message keys of the indexed conventions.
_TABLE = sorted(set().union(*(_strings(getattr(C, name)) for name in dir(C) if name.isupper())))
_INDEXED = [
    f"{prefix}{i}.{field}"
    for prefix in C.CONSUMED_PREFIXES
    for i in (0, 1, 10)
    for field in ("message.role", "message.content", "role", "content", "")
]
_hostile_text = st.text(
    st.characters(codec=None, exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\x00", "\u2028"]),
    max_size=30,
)
_scalars = st.one_of(
    st.none(),
    _hostile_text,
    st.sampled_from(_TABLE),
    st.booleans(),
    st.integers(),  # unbounded: huge integers too
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.floats(),  # NaN and infinities too
    st.binary(max_size=20),
    json_values.map(lambda v: json.dumps(v)),  # JSON text where JSON is read (usage_details, cost_details...)
    st.dictionaries(st.sampled_from(["total", "input", "output", "prompt_tokens", "model", "x"]), json_values).map(
        json.dumps
    ),
)
# Values as the sources hand them to the translator: the decoders give scalars, tuples for arrays of one scalar
# type and JSON text for anything nested (kvlists, mixed or nested arrays); the in-process SDK source gives
# scalars (Python ints of any size) and tuples.
_nested = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_hostile_text, c, max_size=3),
                       max_leaves=8)
_attr_values = st.one_of(
    _scalars,
    st.lists(st.integers(), max_size=4).map(tuple),
    st.lists(st.floats(), max_size=4).map(tuple),
    st.lists(_hostile_text, max_size=4).map(tuple),
    st.lists(st.booleans(), max_size=4).map(tuple),
    st.lists(_nested, max_size=4).map(homogeneous_array),
    st.dictionaries(_hostile_text, _nested, max_size=3).map(to_json_text),
)
_attr_keys = st.sampled_from(_TABLE) | st.sampled_from(_INDEXED) | _hostile_text
_attributes = st.dictionaries(_attr_keys, _attr_values, max_size=12)
_hex_ids = {
    32: st.text("0123456789abcdef", min_size=32, max_size=32) | _hostile_text,
    16: st.text("0123456789abcdef", min_size=16, max_size=16) | _hostile_text,
}


@st.composite
def span_data(draw: st.DrawFn) -> SpanData:
    keyed = draw(st.booleans())
    attributes = dict(draw(_attributes))
    if keyed:  # often a session key, so that the span reaches assembly and the session tables
        attributes.setdefault(C.SESSION_KEY[0], draw(_hostile_text | st.sampled_from(["s-1", "s-2"])))
        attributes.setdefault(C.VERSION[0], draw(_hostile_text | st.just("v1")))
    events = tuple(
        EventData(
            draw(st.sampled_from(["exception"]) | _hostile_text), draw(st.integers(0, (1 << 64))), draw(_attributes)
        )
        for _ in range(draw(st.integers(0, 2)))
    )
    return SpanData(
        trace_id=draw(_hex_ids[32]),
        span_id=draw(_hex_ids[16]),
        parent_span_id=draw(st.none() | _hex_ids[16]),
        name=draw(_hostile_text),
        start_ns=draw(st.integers(-1, (1 << 64))),
        end_ns=draw(st.integers(-1, (1 << 64))),
        status_code=draw(st.integers(-1, 3)),
        status_message=draw(_hostile_text),
        attributes=attributes,
        events=events,
        resource=draw(st.dictionaries(st.sampled_from(_TABLE) | _hostile_text, _attr_values, max_size=4)),
        scope=draw(_hostile_text),
    )


def _fuzz_pipeline(pipeline: Pipeline) -> None:
    @BUDGET
    @given(st.lists(span_data(), min_size=1, max_size=4))
    def one(spans: list[SpanData]) -> None:
        valid = 0
        for span in spans:
            try:
                row = translate(span)
            except InvalidSpan:
                continue
            assert isinstance(row, SpanRow)
            valid += 1
            for text in (row.input, row.output, row.metadata, row.error, row.own_custom_id, row.name):
                if text is not None:
                    text.encode("utf-8")  # storable everywhere: no lone surrogate left
                    assert "\x00" not in text
            assert row.cost is None or math.isfinite(row.cost)
            for tokens in (row.input_tokens, row.output_tokens, row.total_tokens, row.cache_read_tokens):
                assert tokens is None or -(1 << 63) <= tokens < (1 << 63)
        result = pipeline.ingest(spans)  # commits, or raises: the test fails
        assert result.rejected == len(spans) - valid
        assert result.accepted + result.duplicates == valid
        for summary in pipeline.store.list_sessions(limit=5):
            pipeline.session(summary.custom_id, summary.version)  # the records read back

    one()


@pytest.mark.fuzz
def test_fuzz_translator_and_pipeline_on_sqlite(tmp_path: Path) -> None:
    """RELIABILITY 19: 300 random batches of hostile spans: translate() gives a SpanRow (clean text, finite cost,
    int64 tokens) or raises InvalidSpan; Pipeline.ingest commits each batch into SQLite; sessions read back."""
    store = open_store(f"sqlite:///{tmp_path / 'translate.db'}")
    try:
        _fuzz_pipeline(Pipeline(store))
    finally:
        store.close()


@pytest.mark.fuzz
def test_fuzz_translator_and_pipeline_on_postgres(pg_schema: tuple[str, str]) -> None:
    """RELIABILITY 19: the same on PostgreSQL (whose text refuses NUL and lone surrogates)."""
    store = open_store(pg_schema[0])
    try:
        _fuzz_pipeline(Pipeline(store))
    finally:
        store.close()


def test_translator_takes_a_list_value_on_a_marker_key() -> None:
    """A Python list or dict value (allowed by SpanData's type, though no source of galtea-otel makes one: the
    decoders and the SDK give tuples or JSON text) on an LLM marker key gives a row; it used to raise
    TypeError (found by the fuzzer above with a larger budget)."""
    span = SpanData("1" * 32, "1" * 16, None, "chat", 1, 2, attributes={"galtea.span.type": []})
    assert isinstance(translate(span), SpanRow)
