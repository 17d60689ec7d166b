"""to_json never raises and handles odd types; truncate_json always gives valid JSON within the limit."""

from __future__ import annotations

import datetime as dt
import enum
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace

from galtea_otel.config import Config
from galtea_otel.instrument.capture import encode
from galtea_otel.instrument.serialize import MARGIN_CHARS, cut_prefix, to_json, to_json_bounded, truncate_json


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Message(pydantic.BaseModel):
    role: str
    content: str
    at: dt.datetime


@dataclass
class Turn:
    text: str
    tags: set[str] = field(default_factory=set)
    inner: Any = None


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class BadDump(pydantic.BaseModel):
    x: int

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        raise RuntimeError("dump failed")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def roundtrip(value: Any) -> Any:
    return json.loads(to_json(value))


def test_plain_values() -> None:
    assert to_json("héllo \"q\"") == '"héllo \\"q\\""'
    assert roundtrip({"a": [1, 2.5, None, True]}) == {"a": [1, 2.5, None, True]}
    assert roundtrip((1, "two")) == [1, "two"]


def test_odd_types() -> None:
    moment = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    assert roundtrip(Message(role="user", content="hi", at=moment)) == {
        "role": "user", "content": "hi", "at": "2024-05-01T12:30:00Z"}
    assert roundtrip(Turn("t", {"b", "a"}, inner=Color.RED)) == {
        "text": "t", "tags": ["a", "b"], "inner": "red"}
    assert roundtrip({1, 3, 2}) == [1, 2, 3]
    assert sorted(roundtrip({1, "a"}), key=str) == [1, "a"]  # unsortable set: kept, unsorted
    assert roundtrip(b"plain text") == "plain text"
    assert roundtrip(b"\xff\x00\xfe") == {"base64": "/wD+"}
    assert roundtrip(moment) == "2024-05-01T12:30:00+00:00"
    assert roundtrip(dt.date(2024, 1, 2)) == "2024-01-02"
    assert roundtrip(Level.HIGH) == 3
    assert roundtrip(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert roundtrip(Decimal("1.10")) == "1.10"
    assert roundtrip(PurePosixPath("/tmp/x")) == "/tmp/x"
    assert roundtrip({(1, 2): "tuple key", None: 1, 2: "int key"}) == {
        "(1, 2)": "tuple key", "null": 1, "2": "int key"}
    assert roundtrip(OrderedDict(b=1, a=2)) == {"b": 1, "a": 2}
    assert roundtrip(Opaque()) == "<Opaque thing>"
    assert roundtrip(float("nan")) == "NaN"
    assert roundtrip([float("inf"), -float("inf")]) == ["Infinity", "-Infinity"]


def test_never_raises() -> None:
    assert roundtrip(BadRepr()) == "<unrepresentable BadRepr>"
    assert roundtrip({"x": [BadRepr()]}) == {"x": ["<unrepresentable BadRepr>"]}
    assert isinstance(roundtrip(BadDump(x=1)), str)  # falls back to repr
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    assert roundtrip(cyclic) == {"name": "loop", "self": "<cycle>"}
    cyclic_list: list[Any] = [1]
    cyclic_list.append(cyclic_list)
    assert roundtrip(cyclic_list) == [1, "<cycle>"]
    shared = [1]
    assert roundtrip([shared, shared]) == [[1], [1]]  # shared, not cyclic
    deep: Any = "bottom"
    for _ in range(5000):
        deep = [deep]
    assert isinstance(roundtrip(deep), list)


def test_truncation_keeps_strings_strings() -> None:
    text = "x" * 10_000
    out, truncated = truncate_json(to_json(text), 1000)
    assert truncated and len(out.encode()) <= 1000
    value = json.loads(out)
    assert isinstance(value, str) and value.startswith("xxx") and value.endswith("[truncated 10002 bytes]")


def test_truncation_of_objects_gives_a_marker() -> None:
    payload = to_json({"items": list(range(5000))})
    out, truncated = truncate_json(payload, 512)
    assert truncated and len(out.encode()) <= 512
    marker = json.loads(out)
    assert marker["galtea.truncated"] is True and marker["original_bytes"] == len(payload.encode())
    assert payload.startswith(marker["preview"])


def test_small_values_are_untouched() -> None:
    assert truncate_json('"short"', 256) == ('"short"', False)


@settings(max_examples=300, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=200,
    ),
    limit=st.integers(min_value=256, max_value=2048),
)
def test_truncation_is_always_valid_json_within_the_limit(value: Any, limit: int) -> None:
    out, _ = truncate_json(to_json(value), limit)
    assert len(out.encode("utf-8")) <= limit
    json.loads(out)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(), min_size=100, max_size=3000), limit=st.integers(256, 1024))
def test_truncated_strings_with_escapes_and_wide_characters(text: str, limit: int) -> None:
    out, _ = truncate_json(to_json(text), limit)
    assert len(out.encode("utf-8")) <= limit
    assert isinstance(json.loads(out), str)


# --- bounded capture (issue 12 point 5): the work follows the limit, not the value ---------------------------------

LIMIT = 64 * 1024


class CountingList(list):  # type: ignore[type-arg]
    """A list that counts the items anyone iterates over."""

    visited = 0

    def __iter__(self) -> Any:
        for item in super().__iter__():
            CountingList.visited += 1
            yield item


def visited_items(size: int) -> int:
    CountingList.visited = 0
    text, complete = to_json_bounded({"messages": CountingList(f"message {i}" for i in range(size))}, LIMIT)
    assert not complete and len(text) <= LIMIT + MARGIN_CHARS
    return CountingList.visited


def test_capturing_a_huge_list_visits_as_many_items_as_the_limit_needs() -> None:
    small, large = visited_items(100_000), visited_items(1_000_000)  # both far beyond the 64 KiB window
    assert small == large  # the same work for 10x the items
    assert large <= LIMIT + MARGIN_CHARS  # each item written costs at least one character of the window


def _best(fn: Any, repeat: int = 3) -> float:
    """The fastest of ``repeat`` runs, in CPU time of this thread (other processes taking the core do not count)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


@pytest.mark.parametrize("make", [
    lambda n: "x" * n,
    lambda n: "é" * n,
    lambda n: {"doc": "y" * n, "n": 1},
    lambda n: [{"role": "user", "content": "z" * 1000} for _ in range(n // 1000)],
], ids=["ascii-string", "wide-string", "dict-with-a-big-string", "list-of-messages"])
def test_capture_cost_does_not_grow_with_the_value(make: Any) -> None:
    """Capturing a 40 MB value costs about what a 1 MB one does (a ratio within the test, not seconds; whole
    serialization would take ~40x): the value is cut while it is serialized, not serialized whole and cut after."""
    config = Config(tracer=trace.get_tracer("t"), max_value_bytes=LIMIT)
    one, forty = make(1_000_000), make(40_000_000)
    small = _best(lambda: encode(one, config))
    large = _best(lambda: encode(forty, config))
    assert large < 5 * max(small, 1e-4), f"{large / small:.1f}x the time for 40x the value"
    out = encode(forty, config)
    assert len(out.encode()) <= LIMIT
    json.loads(out)


def test_a_truncated_string_keeps_its_start_and_says_how_long_it_was() -> None:
    config = Config(tracer=trace.get_tracer("t"), max_value_bytes=1024)
    value = json.loads(encode("ab" * 1_000_000, config))
    assert isinstance(value, str) and value.startswith("abab") and value.endswith("…[truncated, 2000000 characters]")
    marker = json.loads(encode(list(range(1_000_000)), config))
    assert marker["galtea.truncated"] is True and marker["preview"].startswith("[0,1,2,3")


def test_a_secret_cut_by_the_window_is_not_kept() -> None:
    """Redaction runs on the window (the limit plus a margin) and the final cut drops the margin: a key placed
    anywhere around the limit is masked or cut away, never kept in part."""
    from galtea_otel.redact import secrets

    key = "sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6"
    config = Config(tracer=trace.get_tracer("t"), max_value_bytes=1024, redact=secrets())
    for offset in range(0, 1024 + MARGIN_CHARS + 64, 37):
        value = "a" * offset + f" {key} " + "b" * 20_000
        out = json.loads(encode(value, config))
        assert key[:12] not in out, offset


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children) | st.tuples(children),
        max_leaves=300,
    ),
    limit=st.integers(min_value=256, max_value=1024),
)
def test_bounded_serialization_is_a_prefix_of_the_full_text_and_cuts_to_valid_json(value: Any, limit: int) -> None:
    full = to_json(value)
    text, complete = to_json_bounded(value, limit - MARGIN_CHARS + 1 if limit > MARGIN_CHARS else 1)
    if complete:
        assert text == full
    else:
        assert full.startswith(text)
        out = cut_prefix(text, limit)
        assert len(out.encode("utf-8")) <= limit
        json.loads(out)
