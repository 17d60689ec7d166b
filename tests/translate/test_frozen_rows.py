"""The translator's rows, frozen (issue 9: making translation cheaper must not change one output).

``data/frozen_rows.json.gz`` holds 1,600 spans and the rows the translator of the revision named in it gave them:
the spans that the whole test suite translated (the conformance apps, the producers' recorded shapes, the pipeline,
store and fuzz-regression tests), the fuzz seeds, the benchmarks' spans, and spans made by recombining real
attribute keys and values at random (bad ids, NaN, lone surrogates, NUL, indexed messages, JSON of every
convention), one span per distinct shape; every ninth is translated with the secrets redactor. Each is
translated again here and its row compared field by field.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.redact import secrets
from galtea_otel.spandata import EventData, SpanData
from galtea_otel.translate import translator
from galtea_otel.translate.translator import InvalidSpan, translate

DATA = Path(__file__).parent / "data" / "frozen_rows.json.gz"
KEY = b"frozen-rows-test-key"


def _value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    (kind, inner), = v.items()
    if kind == "float":
        return float(inner)
    if kind == "surrogates":
        return base64.b64decode(inner).decode("utf-8", "surrogatepass")
    if kind == "bytes":
        return base64.b64decode(inner)
    if kind == "tuple":
        return tuple(_value(x) for x in inner)
    if kind == "list":
        return [_value(x) for x in inner]
    if kind == "dict":
        return {k: _value(x) for k, x in inner}
    raise ValueError(kind)


def _attrs(pairs: list[list[Any]]) -> dict[str, Any]:
    return {_value(k): _value(v) for k, v in pairs}


def _span(raw: dict[str, Any]) -> SpanData:
    return SpanData(
        trace_id=_value(raw["trace_id"]), span_id=_value(raw["span_id"]), parent_span_id=_value(raw["parent_span_id"]),
        name=_value(raw["name"]), start_ns=raw["start_ns"], end_ns=raw["end_ns"], status_code=raw["status_code"],
        status_message=_value(raw["status_message"]), attributes=_attrs(raw["attributes"]),
        events=tuple(EventData(_value(name), time_ns, _attrs(attrs)) for name, time_ns, attrs in raw["events"]),
        resource=_attrs(raw["resource"]), scope=_value(raw["scope"]),
    )


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(gzip.decompress(DATA.read_bytes()))["cases"]
    return cases


def _row(case: dict[str, Any]) -> dict[str, Any]:
    span = _span(case["span"])
    try:
        row = translate(span, redact=secrets(key=KEY) if case["redact"] else None, received_ns=0)
    except InvalidSpan as exc:
        return {"InvalidSpan": str(exc)}
    except Exception as exc:  # a crash the frozen translator had too (kept as it was: only its type is frozen)
        return {"raises": type(exc).__name__}
    return {k: _value(v) if isinstance(v, dict) else v for k, v in dataclasses.asdict(row).items()}


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    return {k: _value(v) if isinstance(v, dict) and k not in ("InvalidSpan", "raises") else v
            for k, v in case["row"].items()}


def test_the_corpus_is_varied() -> None:
    cases = _cases()
    rows = [case["row"] for case in cases]
    kinds = {row.get("kind") for row in rows}
    assert {"GENERATION", "TOOL", "AGENT", "CHAIN", "MARKER", "SPAN", "RETRIEVER"} <= kinds
    assert sum(1 for row in rows if row.get("input_messages")) > 50
    assert sum(1 for row in rows if row.get("metadata")) > 500
    assert sum(1 for row in rows if "InvalidSpan" in row) > 20
    assert sum(1 for row in rows if row.get("cost") is not None) > 10
    assert sum(1 for case in cases if case["redact"]) > 100


def test_rows_are_the_frozen_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each span translated twice: read directly (its set of keys new), then through the plan made for the keys
    (seen before)."""
    monkeypatch.setattr(translator, "_PLANS", {})
    monkeypatch.setattr(translator, "_SEEN", set())
    differ = []
    for i, case in enumerate(_cases()):
        want = _expected(case)
        for path in ("direct", "planned"):
            got = _row(case)
            if got != want:
                fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                differ.append(f"case {i} ({case['span']['name']!r}), {path}: {fields}")
    assert not differ, "\n".join(differ[:20])
    assert len(translator._PLANS) > 1000  # the second reading went through plans


def test_rows_are_the_same_when_the_plans_start_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan cache and the seen keys, started over at every new set of keys (as a stream of ever new ones
    makes them), change nothing."""
    monkeypatch.setattr(translator, "_PLANS", {})
    monkeypatch.setattr(translator, "_SEEN", set())
    monkeypatch.setattr(translator, "_PLANS_MAX", 1)
    cases = _cases()[::7]
    for _ in range(3):
        assert [_row(case) for case in cases] == [_expected(case) for case in cases]
    assert len(translator._PLANS) <= 1 and len(translator._SEEN) <= 1
