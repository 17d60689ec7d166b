"""Seed corpora for the atheris targets: real OTLP bodies, made by the real OpenTelemetry SDK and its real OTLP
encoder, with the attribute keys of the conventions table (so the fuzzer starts deep in the translator).

Deterministic: fixed ids and timestamps, so that a run with a fixed ``-seed`` is reproducible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from galtea_otel import attributes as A
from galtea_otel.translate import conventions as C

from ..decode.samples import json_request, json_span, llm_spans, to_otlp_json

PROTO = b"\x00"
"""The first byte of a ``pipeline`` target input selects the decoder: even -> protobuf, odd -> JSON."""
JSON = b"\x01"

T0 = 1_700_000_000_000_000_000


class _Counting(IdGenerator):
    def __init__(self) -> None:
        self.n = 0

    def generate_span_id(self) -> int:
        self.n += 1
        return 0x1000_0000_0000_0000 + self.n

    def generate_trace_id(self) -> int:
        self.n += 1
        return 0x5B8E_FFF7_9803_8103_D269_B633_0000_0000 + self.n


def _convention_attributes() -> Iterator[dict[str, Any]]:
    """Attribute maps that, between them, use every key of the conventions table, with plausible values."""
    text_keys = [
        *C.SESSION_KEY, *C.VERSION, *C.TEST_CASE, *C.SESSION_CONTEXT, *C.SESSION_METADATA, *C.USER, *C.MODEL,
        *C.ERROR_TEXT, *C.ERROR_TYPE, *C.ERROR_LEVEL_MESSAGE,
        *(key for kind, key in C.INPUT + C.OUTPUT if kind == "text"),
    ]
    int_keys = [*C.INPUT_TOKENS, *C.OUTPUT_TOKENS, *C.TOTAL_TOKENS, *C.CACHE_READ_TOKENS]
    # One span per position in the "first key present wins" tuples, so each key is seen winning.
    for i, key in enumerate(text_keys):
        yield {key: f"v{i}", C.SESSION_KEY[i % len(C.SESSION_KEY)]: f"conv-{i % 3}", "service.extra": i}
    for i, key in enumerate(int_keys):
        yield {key: 10 + i, A.SPAN_TYPE: A.TYPE_GENERATION, A.SESSION_CUSTOM_ID: "conv-tokens"}
    for key, values in C.LLM_MARKERS:
        yield {key: sorted(values)[0] if values else "chat", "gen_ai.request.model": "gpt-4o",
               A.SESSION_CUSTOM_ID: "conv-llm", A.SESSION_VERSION: "2"}
    for key, mapping in C.SPAN_TYPE_SOURCES:
        for value in sorted(mapping)[:3]:
            yield {key: value.upper(), A.SESSION_CUSTOM_ID: "conv-types"}
    for kind, prefix in C.INPUT + C.OUTPUT:
        if kind == "indexed":
            yield {
                f"{prefix}0.message.role": "user", f"{prefix}0.message.content": "hello",
                f"{prefix}1.role": "assistant", f"{prefix}1.content": "hi", f"{prefix}x.bad": "ignored",
                A.GEN_AI_OPERATION_NAME: "chat", A.SESSION_CUSTOM_ID: "conv-indexed",
            }
    for kind, key in C.COST:
        yield {key: 0.0125 if kind == "number" else json.dumps({"input": 0.01, "output": 0.02}),
               A.SPAN_TYPE: A.TYPE_GENERATION}
    yield {"langfuse.observation.cost_details": json.dumps({"total": 1.5})}
    for key, fields, _ in C.JSON_FIELDS:
        yield {key: json.dumps({names[0]: 7 if "token" in concept else "gpt-4o" for concept, names in fields.items()}),
               "langfuse.observation.type": "generation", "langfuse.session.id": "conv-lf"}
    for key, value in C.ERROR_LEVEL:
        yield {key: value, C.ERROR_LEVEL_MESSAGE[0]: "boom", "langfuse.session.id": "conv-lf"}
    yield {A.SESSION_EVENT: "END", A.SESSION_CUSTOM_ID: "conv-0", A.SESSION_VERSION: "1"}
    yield {A.SPAN_ABANDONED: True, A.SESSION_CUSTOM_ID: "conv-1"}
    yield {A.SESSION_METADATA: json.dumps({"plan": "pro"}), A.SESSION_CUSTOM_ID: "conv-2", "extra.list": (1, 2)}
    yield {A.SPAN_INPUT: json.dumps("quoted \"text\""), A.SPAN_OUTPUT: '"plain"', "f": float("nan")}


def convention_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "fuzz-app", "service.version": "9.9", A.TEST_CASE_ID: "tc-1"}),
        id_generator=_Counting(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.fuzz", "1.0")
    t = T0
    with tracer.start_as_current_span("root", start_time=t, end_on_exit=False) as root:
        for i, attrs in enumerate(_convention_attributes()):
            t += 1_000
            span = tracer.start_span(f"span-{i}", kind=SpanKind.CLIENT, attributes=attrs, start_time=t)
            span.add_event("exception", {"exception.type": "ValueError", "exception.message": "bad"}, timestamp=t)
            if i % 4 == 0:
                span.set_status(Status(StatusCode.ERROR, "failed"))
            span.end(end_time=t + 500)
        root.end(end_time=t + 1_000)
    provider.shutdown()
    return list(exporter.get_finished_spans())


def proto_bodies() -> list[bytes]:
    spans = convention_spans()
    bodies = [bytes(encode_spans(spans[i : i + 8]).SerializeToString()) for i in range(0, len(spans), 8)]
    bodies.append(bytes(encode_spans(llm_spans(sessions=2, turns=2, big=16)).SerializeToString()))
    bodies.append(b"")
    return bodies


def json_bodies() -> list[bytes]:
    spans = convention_spans()
    docs: list[Any] = [to_otlp_json(encode_spans(spans[i : i + 8])) for i in range(0, len(spans), 8)]
    docs.append(to_otlp_json(encode_spans(llm_spans(sessions=1, turns=2, big=16))))
    # The OTLP specification's hand-written form: upper-case hex, enum names, snake_case keys, every value kind.
    values = [
        {"stringValue": "s"}, {"intValue": "42"}, {"boolValue": True}, {"doubleValue": "NaN"},
        {"bytesValue": "aGk="}, {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "x"}]}},
        {"kvlistValue": {"values": [{"key": "k", "value": {"arrayValue": {}}}]}},
    ]
    docs.append(json_request(
        json_span(parent="0000000000000000", status={"code": "STATUS_CODE_ERROR", "message": "m"},
                  attributes=[{"key": f"k{i}", "value": v} for i, v in enumerate(values)],
                  events=[{"name": "exception", "time_unix_nano": "1", "attributes": []}]),
        json_span(span_id="EEE19B7EC3C1B175", parent="EEE19B7EC3C1B174"),
    ))
    return [json.dumps(doc).encode() for doc in docs] + [b"{}", b""]


def write_corpus(target: str, directory: Path) -> int:
    """Write the seeds of ``target`` (proto, json, pipeline) into ``directory``; return how many."""
    if target == "proto":
        bodies = proto_bodies()
    elif target == "json":
        bodies = json_bodies()
    elif target == "pipeline":
        bodies = [PROTO + b for b in proto_bodies()] + [JSON + b for b in json_bodies()]
    else:
        raise ValueError(f"unknown target {target!r}")
    directory.mkdir(parents=True, exist_ok=True)
    for body in bodies:
        (directory / f"seed-{hashlib.sha1(body).hexdigest()}").write_bytes(body)
    return len(bodies)


_JSON_TOKENS = (
    "resourceSpans", "resource_spans", "scopeSpans", "scope_spans", "instrumentationLibrarySpans", "scope",
    "resource", "spans", "traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id", "name",
    "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "status", "code", "message", "events", "attributes",
    "key", "value", "values", "stringValue", "intValue", "boolValue", "doubleValue", "bytesValue", "arrayValue",
    "kvlistValue", "int_value", "double_value", "array_value", "kvlist_value", "STATUS_CODE_ERROR", "NaN",
    "Infinity", "-Infinity", "9223372036854775807", "18446744073709551615", "exception", "exception.type",
)


def write_dictionary(path: Path) -> int:
    """A libFuzzer dictionary: OTLP/JSON field names and values, JSON literals, and the conventions table's keys
    (the fuzzer splices them into bodies, in both encodings)."""
    keys = set(C.CONSUMED_KEYS) | set(C.CONSUMED_PREFIXES) | set(C.RESOURCE_VERSION)
    keys |= {value for _, values in C.LLM_MARKERS for value in values or ()}
    tokens = sorted(set(_JSON_TOKENS) | keys)
    entries = [json.dumps(token) for token in tokens]  # the quoted JSON string
    entries += tokens  # and the bare text (also how protobuf holds it)
    entries += ["-1", "true", "null", "[]", "{}", "\\ud800", "\\u0000", "1e400"]
    lines = [json.dumps(entry) for entry in dict.fromkeys(entries)]  # a dictionary entry is a C-like string
    path.write_text("\n".join(lines) + "\n")
    return len(lines)
