"""SpanData -> SpanRow, driven by the conventions table."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from galtea_otel.evaluate.events import span_evaluations
from galtea_otel.redact import redact_row
from galtea_otel.spandata import STATUS_ERROR, AttrValue, SpanData
from galtea_otel.translate import conventions as C
from galtea_otel.translate.row import KIND_LLM, KIND_MARKER, KIND_SPAN, SpanRow

Attrs = Mapping[str, AttrValue]
_HEX = frozenset("0123456789abcdef")


class InvalidSpan(ValueError):
    """A span that cannot be recorded (bad ids); it is rejected alone, its neighbours are kept."""


def _first(attrs: Attrs, keys: tuple[str, ...]) -> AttrValue:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(value: AttrValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (bool, int, float)):
        return str(value)
    return json.dumps(list(value), default=str)


_INT64 = 2**63


def _int(value: AttrValue) -> int | None:
    """An integer that every store can hold (signed 64-bit), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if -_INT64 <= number < _INT64 else None


def _float(value: AttrValue) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def clean_text(text: str | None) -> str | None:
    """Text every store keeps the same: lone surrogates (possible in decoded JSON) become '?', and NUL (which
    PostgreSQL text refuses) becomes U+FFFD."""
    if text is None:
        return None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text


def content_text(value: str) -> str:
    """A JSON-encoded string becomes the plain string; any other text is kept as it is."""
    if value[:1] == '"':
        inner = value[1:-1]
        if value[-1:] == '"' and len(value) > 1 and "\\" not in inner and '"' not in inner:
            return inner  # no escapes: the JSON string is its own text (the common case, without a parse)
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _indexed(attrs: Attrs, prefix: str) -> str | None:
    """Collect ``prefix{i}.{field}`` attributes into a JSON list of objects ordered by i."""
    items: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        index, _, name = key[len(prefix):].partition(".")
        if not index.isdigit() or not name:
            continue
        for drop in C.INDEXED_FIELD_PREFIXES:
            if name.startswith(drop):
                name = name[len(drop):]
        items.setdefault(int(index), {})[name] = value if not isinstance(value, tuple) else list(value)
    if not items:
        return None
    return json.dumps([items[i] for i in sorted(items)], ensure_ascii=False, default=str)


def _cost(attrs: Attrs) -> float | None:
    for kind, key in C.COST:
        value = attrs.get(key)
        if value is None:
            continue
        if kind == "number":
            number = _float(value)
            if number is not None:
                return number
        else:  # json-total
            try:
                details = json.loads(_text(value) or "")
            except ValueError:
                continue
            if isinstance(details, dict):
                if "total" in details:
                    return _float(details["total"])
                numbers = [v for v in details.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
                if numbers:
                    return float(sum(numbers))
            elif isinstance(details, (int, float)):
                return float(details)
    return None


def _json_fields(attrs: Attrs, missing: set[str]) -> dict[str, Any]:
    """Values of the ``missing`` concepts found in fields of JSON object attributes (``C.JSON_FIELDS``)."""
    found: dict[str, Any] = {}
    for key, fields, _ in C.JSON_FIELDS:
        value = attrs.get(key)
        if value is None or missing.isdisjoint(fields):
            continue
        try:
            details = json.loads(_text(value) or "")
        except ValueError:
            continue
        if not isinstance(details, dict):
            continue
        for concept, names in fields.items():
            if concept not in missing or concept in found:
                continue
            for name in names:
                field = details.get(name)
                if field is not None and field != "" and not isinstance(field, (dict, list)):
                    found[concept] = field
                    break
    return found


def _kind(attrs: Attrs) -> str:
    if attrs.get(C.SESSION_EVENT[0]):
        return KIND_MARKER
    for key, values in C.LLM_MARKERS:
        value = attrs.get(key)
        if value is not None and (values is None or (isinstance(value, str) and value in values)):
            return KIND_LLM
    for key, mapping in C.SPAN_TYPE_SOURCES:
        value = attrs.get(key)
        if isinstance(value, str):
            mapped = mapping.get(value.lower())
            if mapped is not None:
                return mapped
    return KIND_SPAN


def _error(span: SpanData, attrs: Attrs) -> tuple[bool, str | None]:
    failed = span.status_code == STATUS_ERROR
    level_error = any(attrs.get(key) == value for key, value in C.ERROR_LEVEL)
    text = _text(_first(attrs, C.ERROR_TEXT))
    if text is None and span.status_message:
        text = span.status_message
    if text is None:
        for event in span.events:
            if event.name == "exception":
                etype = _text(event.attributes.get("exception.type"))
                emsg = _text(event.attributes.get("exception.message"))
                if etype or emsg:
                    text = f"{etype}: {emsg}" if etype and emsg else (etype or emsg)
                    break
    if text is None and (failed or level_error):
        text = _text(_first(attrs, C.ERROR_LEVEL_MESSAGE)) or _text(_first(attrs, C.ERROR_TYPE))
    return failed or level_error, (text if failed or level_error else None)


# Every plain key of the table -> the concepts it can give, with its rank (lower wins). One dict lookup per
# attribute then replaces a probe of every key of every concept.
_PLAIN_CONCEPTS: dict[str, tuple[str, ...]] = {
    "custom_id": C.SESSION_KEY, "version": C.VERSION, "test_case": C.TEST_CASE, "context": C.SESSION_CONTEXT,
    "session_metadata": C.SESSION_METADATA, "event": C.SESSION_EVENT, "user": C.USER, "model": C.MODEL,
    "input_tokens": C.INPUT_TOKENS, "output_tokens": C.OUTPUT_TOKENS, "total_tokens": C.TOTAL_TOKENS,
    "cache_read_tokens": C.CACHE_READ_TOKENS, "error_text": C.ERROR_TEXT, "abandoned": C.ABANDONED,
}
_LOOKUP: dict[str, list[tuple[str, int]]] = {}
for _concept, _keys in _PLAIN_CONCEPTS.items():
    for _rank, _key in enumerate(_keys):
        _LOOKUP.setdefault(_key, []).append((_concept, _rank))
for _concept, _sources in (("input", C.INPUT), ("output", C.OUTPUT)):
    for _rank, (_kind_name, _key) in enumerate(_sources):
        if _kind_name == "text":
            _LOOKUP.setdefault(_key, []).append((_concept, _rank))


def _scan(attrs: Attrs) -> tuple[dict[str, tuple[int, AttrValue]], dict[str, Any], frozenset[str]]:
    """One pass over the keys: the best value of each plain concept, the attributes no convention consumes,
    and which indexed message prefixes occur."""
    consumed, prefixes, lookup = C.CONSUMED_KEYS, C.CONSUMED_PREFIXES, _LOOKUP
    found: dict[str, tuple[int, AttrValue]] = {}
    extra: dict[str, Any] = {}
    indexed: set[str] = set()
    for k, v in attrs.items():
        hits = lookup.get(k)
        if hits is not None:
            if v is None or v == "":
                continue
            for concept, rank in hits:
                best = found.get(concept)
                if best is None or rank < best[0]:
                    found[concept] = (rank, v)
            continue
        if k in consumed:
            continue
        if k.startswith(prefixes):
            indexed.update(p for p in prefixes if k.startswith(p))
            continue
        extra[k] = list(v) if isinstance(v, tuple) else v
    return found, extra, frozenset(indexed)


def _content(attrs: Attrs, concept: str, sources: tuple[C.Source, ...], found: dict[str, tuple[int, AttrValue]],
             indexed: frozenset[str]) -> str | None:
    """The best content source present: a plain key found by the scan, or an indexed list ranked above it."""
    best = found.get(concept)
    best_rank = best[0] if best is not None else len(sources)
    for kind, key in sources[:best_rank]:
        if kind == "indexed" and key in indexed:
            built = _indexed(attrs, key)
            if built is not None:
                return built
    if best is None:
        return None
    text = _text(best[1])
    return content_text(text) if text is not None else None


def _metadata(extra: dict[str, Any], user: AttrValue) -> str | None:
    if user is not None:
        extra["user_id"] = user
    if not extra:
        return None
    return _json_dumps(extra)


def _json_dumps(value: dict[str, Any]) -> str:
    """Strict JSON text: NaN and infinities (OTLP allows them in doubles, arrays of doubles included) are kept as
    text ("nan", "inf"), since NaN is not JSON and what reads the metadata (the Galtea sync) refuses it."""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=False, sort_keys=True, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def check_ids(span: SpanData) -> None:
    """Raise InvalidSpan unless the ids are lower-case hex of the right length and not all zero."""
    for value, length, what in ((span.trace_id, 32, "trace_id"), (span.span_id, 16, "span_id")):
        if len(value) != length or not _HEX.issuperset(value) or value.count("0") == length:
            raise InvalidSpan(f"invalid {what} {value[:40]!r}: expected {length} hex characters, not all zero")
    parent = span.parent_span_id
    if parent is not None and (len(parent) != 16 or not _HEX.issuperset(parent)):
        raise InvalidSpan(f"invalid parent_span_id {parent[:40]!r}: expected 16 hex characters")
    if not (0 <= span.start_ns < _INT64 and 0 <= span.end_ns < _INT64):
        raise InvalidSpan(f"timestamps out of range: start {span.start_ns}, end {span.end_ns} (nanoseconds)")


Redactor = Callable[[str], str]


def translate(span: SpanData, *, redact: Redactor | None = None, received_ns: int | None = None) -> SpanRow:
    """Read one span through the conventions table. Raises InvalidSpan for ids that cannot be stored."""
    check_ids(span)
    attrs = span.attributes
    kind = _kind(attrs)
    failed, error = _error(span, attrs)
    found, extra, indexed = _scan(attrs)

    missing = set(C.JSON_CONCEPTS - found.keys())
    if missing:  # concepts no plain key gave: look in JSON object attributes
        for concept, value in _json_fields(attrs, missing).items():
            found[concept] = (0, value)

    def get(concept: str) -> AttrValue:
        hit = found.get(concept)
        return hit[1] if hit is not None else None

    custom_id = _text(get("custom_id"))
    version = _text(get("version"))
    resource_version = _text(_first(span.resource, C.RESOURCE_VERSION))
    test_case = _text(get("test_case")) or _text(_first(span.resource, C.RESOURCE_TEST_CASE))
    inp = _content(attrs, "input", C.INPUT, found, indexed)
    out = _content(attrs, "output", C.OUTPUT, found, indexed)
    context = _text(get("context"))
    user = get("user")
    metadata = _metadata(extra, user)
    session_meta = _text(get("session_metadata"))
    if session_meta:
        metadata = _merge_json(session_meta, metadata)
    input_tokens = _int(get("input_tokens"))
    output_tokens = _int(get("output_tokens"))
    total = _int(get("total_tokens"))
    if total is None and (input_tokens is not None or output_tokens is not None):
        total = (input_tokens or 0) + (output_tokens or 0)
    event = _text(get("event"))
    row = SpanRow(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=clean_text(span.name) or "",
        kind=kind,
        start_ns=span.start_ns,
        end_ns=max(span.end_ns, span.start_ns),
        status=STATUS_ERROR if failed else span.status_code,
        error=clean_text(error),
        session_event=clean_text(event),
        own_custom_id=clean_text(custom_id),
        own_version=clean_text(version),
        resource_version=clean_text(resource_version),
        test_case_id=clean_text(test_case),
        context=clean_text(context),
        input=clean_text(inp),
        output=clean_text(out),
        model=clean_text(_text(get("model"))),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=_int(get("cache_read_tokens")),
        total_tokens=total,
        cost=_cost(attrs),
        abandoned=bool(get("abandoned")),
        metadata=clean_text(metadata),
        received_ns=received_ns if received_ns is not None else time.time_ns(),
        user_id=clean_text(_text(user)),
        evaluations=span_evaluations(span.events, redact) if span.events else None,  # issue 11
    )
    if redact is not None:  # every text field of the row, in one place (galtea_otel.redact.redact_row)
        redact_row(row, redact)
    return row


def _merge_json(session_meta: str, metadata: str | None) -> str:
    """The session's own metadata (a JSON object) with the span's unmapped attributes added beside it."""
    try:
        base = json.loads(session_meta)
    except ValueError:
        base = {"metadata": session_meta}
    if not isinstance(base, dict):
        base = {"metadata": base}
    if metadata:
        for key, value in json.loads(metadata).items():
            base.setdefault(key, value)
    return _json_dumps(base)  # the session's metadata text may hold NaN too (Python's json reads it)
