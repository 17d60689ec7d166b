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
from typing import Any

from galtea_otel.stats import internal_error

__all__ = ["to_json", "truncate_json"]

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
