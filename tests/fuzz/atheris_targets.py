"""Coverage-guided fuzz targets (atheris / libFuzzer) for the decoders, the translator and the pipeline.

Run one target::

    python -m tests.fuzz.atheris_targets seeds DIR TARGET        # write TARGET's seed corpus into DIR
    python -m tests.fuzz.atheris_targets dict FILE               # write the dictionary (OTLP and convention keys)
    python -m tests.fuzz.atheris_targets TARGET DIR -dict=FILE [libFuzzer flags: -max_total_time=600 -timeout=10]

TARGET is one of:

- ``proto``: :func:`decode_proto` returns a :class:`DecodeResult` or raises :class:`DecodeError`, nothing else;
  whatever it returns holds only valid spans.
- ``json``: the same for :func:`decode_json`.
- ``pipeline``: the first byte picks the decoder (even: protobuf, odd: JSON), the rest is the body; every decoded
  span goes through :func:`translate` (a SpanRow, or :class:`InvalidSpan`) and then ``Pipeline.ingest`` into a
  SQLite store in a temporary directory, which must account for every span and raise nothing.

Anything else that escapes (or a failed check) is a crash: libFuzzer writes the input to ``crash-<sha1>`` under
``-artifact_prefix`` and exits non-zero; replay it with ``python -m tests.fuzz.atheris_targets TARGET FILE``.
A hang longer than ``-timeout`` seconds is written as ``timeout-<sha1>``.

``GALTEA_OTEL_FUZZ_PLANT_BUG=1`` plants a bug in the protobuf decoder (a span name with a control character
raises ``IndexError``), to show that the harness catches what escapes; the tests use it only for that check.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

# Instrument the package only (coverage feedback from our own code); protobuf's and json's parsers are C.
with atheris.instrument_imports(include=["galtea_otel"]):
    from galtea_otel.decode import otlp_proto
    from galtea_otel.decode.common import MAX_ERRORS, DecodeError, DecodeResult
    from galtea_otel.decode.otlp_json import decode_json
    from galtea_otel.pipeline import Pipeline
    from galtea_otel.store import open_store
    from galtea_otel.store import sqlite as _sqlite  # noqa: F401  (imported lazily by open_store)
    from galtea_otel.translate.row import SpanRow
    from galtea_otel.translate.translator import InvalidSpan, translate

TARGETS = ("proto", "json", "pipeline")
PLANT_BUG = os.environ.get("GALTEA_OTEL_FUZZ_PLANT_BUG") == "1"

_decode_proto = otlp_proto.decode_proto


def decode_proto(body: bytes) -> DecodeResult:
    result = _decode_proto(body)
    if PLANT_BUG and any(not span.name.isprintable() for span in result.spans):
        raise IndexError("planted bug: a span name with a control character")
    return result


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"not strict JSON: {constant} in {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def check_result(result: object) -> None:
    """What a decoder promises about what it returns: only valid spans, and a bounded list of reasons."""
    assert isinstance(result, DecodeResult), type(result)
    assert result.rejected >= 0 and len(result.errors) <= min(result.rejected, MAX_ERRORS), result
    for span in result.spans:
        assert len(span.trace_id) == 32 and int(span.trace_id, 16) and span.trace_id == span.trace_id.lower()
        assert len(span.span_id) == 16 and int(span.span_id, 16) and span.span_id == span.span_id.lower()
        assert span.parent_span_id is None or (
            len(span.parent_span_id) == 16 and span.parent_span_id == span.parent_span_id.lower()
            and int(span.parent_span_id, 16) >= 0
        ), span.parent_span_id
        assert 0 <= span.start_ns < 1 << 63 and 0 <= span.end_ns < 1 << 63, (span.start_ns, span.end_ns)
        assert span.status_code in (0, 1, 2), span.status_code
        assert isinstance(span.name, str) and isinstance(span.status_message, str) and isinstance(span.scope, str)
        assert all(isinstance(key, str) for key in span.attributes)


_TEXT_FIELDS = ("name", "error", "session_event", "own_custom_id", "own_version", "resource_version", "test_case_id",
                "context", "input", "output", "model", "metadata")


def check_row(row: object) -> None:
    """What the translator promises: text every store keeps the same (valid UTF-8, no NUL), 64-bit integers,
    finite numbers, and metadata that is a JSON object."""
    assert isinstance(row, SpanRow), type(row)
    for name in _TEXT_FIELDS:
        value = getattr(row, name)
        if value is not None:
            assert isinstance(value, str), (name, type(value))
            value.encode("utf-8")  # raises on a lone surrogate
            assert "\x00" not in value, name
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "total_tokens"):
        value = getattr(row, name)
        assert value is None or (type(value) is int and -(1 << 63) <= value < 1 << 63), (name, value)
    assert row.cost is None or (isinstance(row.cost, float) and row.cost == row.cost and abs(row.cost) != float("inf"))
    assert row.start_ns <= row.end_ns < 1 << 63
    if row.metadata is not None:
        assert isinstance(_strict_json(row.metadata), dict), row.metadata


def fuzz_proto(data: bytes) -> None:
    try:
        result = decode_proto(data)
    except DecodeError:
        return
    check_result(result)


def fuzz_json(data: bytes) -> None:
    try:
        result = decode_json(data)
    except DecodeError:
        return
    check_result(result)


_pipeline: Pipeline | None = None


def _get_pipeline() -> Pipeline:
    global _pipeline
    if _pipeline is None:
        workdir = os.environ.get("GALTEA_OTEL_FUZZ_WORKDIR") or tempfile.mkdtemp(prefix="galtea-otel-fuzz-")
        # synchronous=off: this store needs no durability, and the fuzzer many executions per second.
        store = open_store("sqlite:///" + str(Path(workdir, "fuzz.db").resolve()) + "?synchronous=off")
        _pipeline = Pipeline(store)
    return _pipeline


def fuzz_pipeline(data: bytes) -> None:
    if not data:
        return
    decode = decode_json if data[0] & 1 else decode_proto
    try:
        result = decode(data[1:])
    except DecodeError:
        return
    check_result(result)
    invalid = 0
    custom_ids = set()
    for span in result.spans:
        try:
            row = translate(span)
        except InvalidSpan:
            invalid += 1
            continue
        check_row(row)
        if row.own_custom_id:
            custom_ids.add(row.own_custom_id)
    pipeline = _get_pipeline()
    ingested = pipeline.ingest(result.spans)
    assert ingested.rejected == invalid, (ingested, invalid)
    assert ingested.accepted + ingested.duplicates + ingested.rejected == len(result.spans), ingested
    # The records of the sessions touched are still readable.
    for custom_id in sorted(custom_ids):
        pipeline.session(custom_id)


FUZZERS = {"proto": fuzz_proto, "json": fuzz_json, "pipeline": fuzz_pipeline}


def main(argv: list[str]) -> None:
    if len(argv) >= 4 and argv[1] == "seeds":
        from tests.fuzz.seeds import write_corpus

        print(write_corpus(argv[3], Path(argv[2])), "seeds written")
        return
    if len(argv) >= 3 and argv[1] == "dict":
        from tests.fuzz.seeds import write_dictionary

        print(write_dictionary(Path(argv[2])), "dictionary entries written")
        return
    if len(argv) < 2 or argv[1] not in FUZZERS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [CORPUS_DIR | FILE] [libFuzzer flags]\n"
                 f"       {argv[0]} seeds DIR {{{','.join(TARGETS)}}}\n"
                 f"       {argv[0]} dict FILE")
    target = FUZZERS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
