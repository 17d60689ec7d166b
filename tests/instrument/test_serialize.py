"""to_json never raises and handles odd types; truncate_json always gives valid JSON within the limit."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from galtea_otel.instrument.serialize import to_json, truncate_json


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
    moment = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
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
