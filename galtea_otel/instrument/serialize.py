"""Turn any Python value into compact JSON text, and cut JSON text to a size limit without breaking it.

:func:`to_json` never raises. Conversions (decided once, here):

- ``str``, ``int``, ``float``, ``bool``, ``None``, lists, tuples (as lists) and dicts: as JSON does;
  non-finite floats become the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
- pydantic models: ``model_dump(mode="json")``; dataclasses: an object of their fields; ``Enum``: its value;
  ``datetime`` / ``date`` / ``time``: ISO 8601; ``UUID``, ``Decimal``, paths: ``str()``; objects with
  ``tolist()`` (numpy): that list; other mappings: objects with ``str()`` keys.
- ``set`` / ``frozenset``: lists, sorted when the items can be sorted.
- ``bytes``: the text when it is valid UTF-8, else ``{"base64": "..."}``.
- anything else: ``repr()``; when even that raises, ``"<unrepresentable TypeName>"``.
- reference cycles become ``"<cycle>"``, nesting deeper than 64 levels ``"<max depth>"``.

:func:`to_json_bounded` and :func:`cut_prefix` do the same for a value much larger than the limit at a cost that
follows the limit: the value is serialized only up to the limit plus a margin; a string becomes its first part
ending with ``"…[truncated, N characters]"``, any other value ``{"galtea.truncated": true, "preview": "..."}``.

:func:`truncate_json` keeps a JSON text within ``max_bytes`` (UTF-8) and keeps it valid JSON: a string is cut
and ends with ``"…[truncated N bytes]"``; any other value is replaced by
``{"galtea.truncated": true, "original_bytes": N, "preview": "<the first bytes of the text>"}``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import json
import math
import os
from collections.abc import Mapping
from typing import Any, cast

from galtea_otel.stats import internal_error

__all__ = ["MARGIN_CHARS", "cut_prefix", "to_json", "to_json_bounded", "truncate_json"]

_MAX_DEPTH = 64
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_STR_MODULES = frozenset({"uuid", "decimal", "pathlib", "ipaddress", "fractions"})


def _default(o: Any) -> Any:
    """One conversion step for a value JSON cannot encode natively (the ``default=`` hook)."""
    dump = getattr(o, "model_dump", None)  # pydantic v2, without importing pydantic
    if dump is not None and callable(dump) and not isinstance(o, type):
        return dump(mode="json")
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name, None) for f in dataclasses.fields(o)}
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (_dt.datetime, _dt.date, _dt.time)):
        return o.isoformat()
    if isinstance(o, (bytes, bytearray, memoryview)):
        raw = bytes(o)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(o, (set, frozenset)):
        items = list(o)
        try:
            return sorted(items)
        except Exception:
            return items
    if isinstance(o, Mapping):
        return {k if isinstance(k, str) else _key(k): v for k, v in o.items()}
    if isinstance(o, (list, tuple)):  # subclasses JSON refused (e.g. namedtuple with odd fields)
        return list(o)
    tolist = getattr(o, "tolist", None)
    if tolist is not None and callable(tolist) and not isinstance(o, type):
        return tolist()
    if type(o).__module__.partition(".")[0] in _STR_MODULES or isinstance(o, os.PathLike):
        return str(o)
    return _repr(o)


def _repr(o: Any) -> str:
    try:
        return repr(o)
    except Exception:
        return f"<unrepresentable {_type_name(o)}>"


def _type_name(o: Any) -> str:
    try:
        return type(o).__name__
    except Exception:  # pragma: no cover
        return "object"


def _key(k: Any) -> str:
    if isinstance(k, enum.Enum):
        k = k.value
    if isinstance(k, str):
        return k
    if k is None or isinstance(k, (bool, int, float)):
        return json.dumps(k)
    return _repr(k) if not isinstance(k, (tuple, _dt.date, _dt.time)) else str(k)


def _jsonable(o: Any, path: set[int], depth: int) -> Any:
    """Convert ``o`` to plain JSON data by hand: the slow path, safe against cycles, depth and odd floats."""
    if isinstance(o, str):
        return str(o)
    if isinstance(o, bool) or o is None:
        return o
    if isinstance(o, int):
        return int(o)
    if isinstance(o, float):
        if math.isfinite(o):
            return float(o)
        return "NaN" if math.isnan(o) else ("Infinity" if o > 0 else "-Infinity")
    if depth >= _MAX_DEPTH:
        return "<max depth>"
    oid = id(o)
    if oid in path:
        return "<cycle>"
    path.add(oid)
    try:
        if isinstance(o, dict):
            return {_key(k): _jsonable(v, path, depth + 1) for k, v in list(o.items())}
        if isinstance(o, (list, tuple)):
            return [_jsonable(v, path, depth + 1) for v in list(o)]
        try:
            converted = _default(o)
        except Exception:
            converted = _repr(o)
        if converted is o:  # pragma: no cover - _default always converts
            return _repr(o)
        return _jsonable(converted, path, depth + 1)
    finally:
        path.discard(oid)


def to_json(value: Any) -> str:
    """Compact JSON text for ``value``; never raises (see the module docstring for the conversions)."""
    if type(value) is str:  # the common case, fast
        return _encoder.encode(value)
    try:
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default
        )
    except Exception:  # a cycle, a non-finite float, an odd key, a raising model_dump...: the careful path
        pass
    try:
        return _encoder.encode(_jsonable(value, set(), 0))
    except Exception as exc:  # RecursionError from a pathological object, ...
        internal_error("serialize", exc)
        return _encoder.encode(f"<unserializable {_type_name(value)}>")


def _cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``max_bytes``."""
    if max_bytes <= 0:
        return ""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def truncate_json(text: str, max_bytes: int) -> tuple[str, bool]:
    """Return ``(text, False)`` when it fits in ``max_bytes``, else a valid JSON replacement and ``True``.

    Lone surrogates (which UTF-8 cannot encode, so no exporter or store could write) become ``?``.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", errors="replace").decode("utf-8")
    if len(text) * 4 <= max_bytes:  # fits whatever the characters are
        return text, False
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return text, False
    original: Any = None
    if text.startswith('"'):
        try:
            original = json.loads(text)
        except ValueError:
            original = None
    if isinstance(original, str):
        suffix = f"…[truncated {size} bytes]"
        budget = max_bytes - len(_encoder.encode(suffix).encode("utf-8"))
        # JSON escapes can grow the text, so shrink until it fits (a few rounds at most).
        for _ in range(8):
            out = _encoder.encode(_cut_utf8(original, budget) + suffix)
            excess = len(out.encode("utf-8")) - max_bytes
            if excess <= 0:
                return out, True
            budget -= max(excess, 16)
        return _encoder.encode(suffix), True
    head = f'{{"galtea.truncated":true,"original_bytes":{size},"preview":'
    budget = max_bytes - len(head) - 3
    for _ in range(8):
        out = head + _encoder.encode(_cut_utf8(text, budget)) + "}"
        excess = len(out.encode("utf-8")) - max_bytes
        if excess <= 0:
            return out, True
        budget -= max(excess, 16)
    return head + '""}', True


# --- bounded serialization: the cost of capturing a value follows the limit, not the value ---------------------------

MARGIN_CHARS = 4096
"""Bounded serialization writes this many characters beyond the limit, so that redaction (run before the final cut)
sees a secret that straddles the cut whole; the final cut then drops at least this much of the window's end."""
_ATOMS = (str, int, float, bool, type(None))


class _Full(Exception):
    """The window is full: stop writing."""


def _small(value: Any, budget: int) -> bool:
    """Whether ``value`` is built-in JSON data (str, numbers, lists, tuples, dicts with str keys) surely smaller
    than ``budget`` characters. Visits at most ``budget`` nodes, whatever the value's size."""
    stack = [value]
    spent = 0
    while stack:
        o = stack.pop()
        t = type(o)
        if t is str:
            spent += len(o) + 2
        elif t is int or t is float or t is bool or o is None:
            spent += 8
        elif t is list or t is tuple:
            spent += len(o) + 2
            if spent > budget:
                return False
            stack.extend(o)
        elif t is dict:
            spent += 2 * len(o) + 2
            if spent > budget:
                return False
            for k, v in o.items():
                if type(k) is not str:
                    return False
                spent += len(k) + 3
                stack.append(v)
        else:
            return False
        if spent > budget:
            return False
    return True


class _Writer:
    """Compact JSON text of a value, written until ``window`` characters are out (then ``_Full``). Same
    conversions as :func:`to_json`; iterative (no recursion); each node written costs at least one character, so
    the work is bounded by the window."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.pieces: list[str] = []
        self.size = 0

    def put(self, text: str) -> None:
        self.pieces.append(text)
        self.size += len(text)
        if self.size >= self.window:
            raise _Full

    def atom(self, o: Any) -> None:
        if type(o) is str or isinstance(o, str):
            room = self.window - self.size
            s = str(o)
            self.put(_encoder.encode(s[:room] if len(s) > room else s))
        elif o is None or isinstance(o, bool):
            self.put("null" if o is None else ("true" if o else "false"))
        elif isinstance(o, int):
            self.put(int.__repr__(o) if o.bit_length() < 4000 else _encoder.encode(f"<int of {o.bit_length()} bits>"))
        else:  # float
            f = float(o)
            self.put(float.__repr__(f) if math.isfinite(f) else
                     ('"NaN"' if math.isnan(f) else ('"Infinity"' if f > 0 else '"-Infinity"')))

    def write(self, value: Any) -> None:
        # The stack holds ("value", object, depth), ("text", piece) and ("items", iterator, depth, is_dict, first).
        path: set[int] = set()
        stack: list[tuple[Any, ...]] = [("value", value, 0)]
        while stack:
            entry = stack.pop()
            kind = entry[0]
            if kind == "text":
                self.put(entry[1])
                continue
            if kind == "leave":
                path.discard(entry[1])
                continue
            if kind == "items":
                _, iterator, depth, is_dict, first = entry
                item = next(iterator, _END)
                if item is _END:
                    continue
                stack.append(("items", iterator, depth, is_dict, False))
                if not first:
                    self.put(",")
                if is_dict:
                    key, item = cast("tuple[Any, Any]", item)
                    self.put(_encoder.encode(key if type(key) is str else _key(key)) + ":")
                stack.append(("value", item, depth + 1))
                continue
            o, depth = entry[1], entry[2]
            if isinstance(o, _ATOMS) and (type(o) in _ATOMS or not isinstance(o, (dict, list, tuple))):
                self.atom(o)
                continue
            if depth >= _MAX_DEPTH:
                self.put('"<max depth>"')
                continue
            oid = id(o)
            if oid in path:
                self.put('"<cycle>"')
                continue
            if isinstance(o, dict):
                opening, closing, iterator, is_dict = "{", "}", iter(o.items()), True
            elif isinstance(o, (list, tuple)):
                opening, closing, iterator, is_dict = "[", "]", iter(o), False
            elif isinstance(o, (set, frozenset)) and len(o) > self.window:
                opening, closing, iterator, is_dict = "[", "]", iter(o), False  # too many to sort: as they come
            else:
                try:
                    converted = _default(o)
                except Exception:
                    converted = _repr(o)
                stack.append(("value", _repr(o) if converted is o else converted, depth + 1))
                continue
            path.add(oid)
            self.put(opening)
            stack.append(("leave", oid))
            stack.append(("text", closing))
            stack.append(("items", iterator, depth, is_dict, True))


_END = object()


def to_json_bounded(value: Any, max_bytes: int) -> tuple[str, bool]:
    """Compact JSON text of ``value``, or, when it would be much larger than ``max_bytes``, at most
    ``max_bytes + MARGIN_CHARS`` characters of it: ``(text, complete)``. ``complete`` False means ``text`` is a
    prefix (not valid JSON): pass it to :func:`cut_prefix` after redaction. The work done is bounded by the
    limit, not by the value (a 100 MB string is sliced before it is encoded; a huge list is walked only as far
    as the window reaches). Never raises."""
    window = max_bytes + MARGIN_CHARS
    if type(value) is str:
        if len(value) <= window:
            return _encoder.encode(value), True
        return _encoder.encode(value[:window])[:-1], False  # an unterminated JSON string
    if _small(value, window):
        return to_json(value), True
    writer = _Writer(window)
    try:
        writer.write(value)
    except _Full:
        return "".join(writer.pieces)[:window], False
    except Exception:  # a value whose iteration or conversion raises: the careful, unbounded path
        return to_json(value), True
    return "".join(writer.pieces), True


def cut_prefix(prefix: str, max_bytes: int, original_chars: int | None = None) -> str:
    """Valid JSON within ``max_bytes`` from the (redacted) prefix of a value too large to capture whole: a
    string value stays a string ending with ``"…[truncated]"``; any other value becomes
    ``{"galtea.truncated": true, "preview": "<the first bytes of its JSON text>"}``. The last
    ``MARGIN_CHARS`` characters of the prefix are never kept (a secret cut in two by the window is not kept)."""
    keep = max(0, min(len(prefix) - MARGIN_CHARS, max_bytes))
    head = prefix[:keep]
    if prefix.startswith('"'):
        # the prefix of a JSON string: drop a trailing partial escape, then decode it
        text = _decode_string_prefix(head).encode("utf-8", "replace").decode("utf-8")
        suffix = "…[truncated]" if original_chars is None else f"…[truncated, {original_chars} characters]"
        budget = max_bytes - len(_encoder.encode(suffix).encode("utf-8"))
        for _ in range(8):
            out = _encoder.encode(_cut_utf8(text, budget) + suffix)
            excess = len(out.encode("utf-8")) - max_bytes
            if excess <= 0:
                return out
            budget -= max(excess, 16)
        return _encoder.encode(suffix)
    head = head.encode("utf-8", "replace").decode("utf-8")
    opening = '{"galtea.truncated":true,"preview":'
    budget = max_bytes - len(opening) - 3
    for _ in range(8):
        out = opening + _encoder.encode(_cut_utf8(head, budget)) + "}"
        excess = len(out.encode("utf-8")) - max_bytes
        if excess <= 0:
            return out
        budget -= max(excess, 16)
    return opening + '""}'


def _decode_string_prefix(prefix: str) -> str:
    """The text of an unterminated JSON string literal (``"abc\\n...``), a trailing partial escape dropped."""
    body = prefix[1:]
    for cut in range(0, 7):  # the longest escape is \\uXXXX (6 characters)
        candidate = body[:len(body) - cut] if cut else body
        try:
            value = json.loads('"' + candidate + '"')
        except ValueError:
            continue
        if isinstance(value, str):
            return value
    return ""
