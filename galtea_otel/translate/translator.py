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
from galtea_otel.translate import messages as M
from galtea_otel.translate.row import COLUMNS, KIND_LLM, KIND_MARKER, KIND_SPAN, SpanRow

Attrs = Mapping[str, AttrValue]


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


def _cost(attrs: Attrs, sources: tuple[C.Source, ...] = C.COST) -> float | None:
    for kind, key in sources:
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


def _json_fields(attrs: Attrs, missing: frozenset[str]) -> dict[str, Any]:
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


_NOT_LLM_SUFFIXES = tuple(suffix for suffix, _ in C.NOT_LLM_CALLS)


def _kind(attrs: Attrs, name: str = "", plan: _Plan | None = None) -> str:
    """The row's kind. ``plan``: the probes of the tables below that the span's keys can answer (the rest give
    None), else all of them."""
    markers, sources, presence = (C.LLM_MARKERS, C.SPAN_TYPE_SOURCES, C.SPAN_TYPE_PRESENCE) if plan is None else (
        plan.llm_markers, plan.type_sources, plan.type_presence)
    if (plan is None or plan.session_event) and attrs.get(C.SESSION_EVENT[0]):
        return KIND_MARKER
    for key, values in markers:
        value = attrs.get(key)
        if value is not None and (values is None or (isinstance(value, str) and value in values)):
            if name.endswith(_NOT_LLM_SUFFIXES):
                return next(kind for suffix, kind in C.NOT_LLM_CALLS if name.endswith(suffix))
            return KIND_LLM
    for key, mapping in sources:
        value = attrs.get(key)
        if isinstance(value, str):
            mapped = mapping.get(value.lower())
            if mapped is not None:
                return mapped
    for key, span_type in presence:
        if attrs.get(key) is not None:
            return span_type
    if name:
        for prefix, span_type in C.SPAN_NAME_TYPES:
            if name.startswith(prefix):
                return span_type
    return KIND_SPAN


_TRACEBACK = "Traceback (most recent call last)"


def error_text(text: str, etype: str | None = None) -> str:
    """``ExceptionType: message`` from what a producer wrote: the last line of a traceback (LangChain writes
    ``repr(exc)`` followed by the whole traceback), ``Type('message')`` reprs unwrapped, the type put in front when
    it is known and missing."""
    if _TRACEBACK in text:
        lines = [line.strip() for line in text[text.index(_TRACEBACK):].splitlines() if line.strip()]
        if lines:
            text = lines[-1]
    else:
        text = text.strip()
    if text.endswith(")") and "(" in text:
        name, _, rest = text.partition("(")
        if name.isidentifier() and rest[:1] in ("'", '"') and rest[-2:-1] == rest[:1]:
            text = f"{name}: {rest[1:-2]}" if len(rest) > 3 else name
    if etype and etype.startswith("<class '") and etype.endswith("'>"):  # str(type(exc)), as openai-v2 writes
        etype = etype[8:-2]
    if etype:
        short = etype.rpartition(".")[2]
        if not (text.startswith(etype) or text.startswith(short + ":") or text == short):
            text = f"{etype}: {text}" if text else etype
    return text


def _error(span: SpanData, attrs: Attrs) -> tuple[bool, str | None]:
    if span.status_code != STATUS_ERROR:
        for key, value in C.ERROR_LEVEL:
            if attrs.get(key) == value:
                break
        else:
            return False, None
    text = _text(_first(attrs, C.ERROR_TEXT))
    if text is None:  # the last exception event: the one that ended the span
        for event in reversed(span.events):
            if event.name == "exception":
                etype = _text(event.attributes.get("exception.type"))
                emsg = _text(event.attributes.get("exception.message"))
                if etype or emsg:
                    text = error_text(emsg or "", etype)
                    break
    if text is None and span.status_message:
        text = error_text(span.status_message, _text(_first(attrs, C.ERROR_TYPE)))
    if text is None:
        text = _text(_first(attrs, C.ERROR_LEVEL_MESSAGE)) or _text(_first(attrs, C.ERROR_TYPE))
    return True, text


# Every plain key of the table -> the concepts it can give, with its rank (lower wins). One dict lookup per
# attribute then replaces a probe of every key of every concept.
_PLAIN_CONCEPTS: dict[str, tuple[str, ...]] = {
    "custom_id": C.SESSION_KEY, "version": C.VERSION, "test_case": C.TEST_CASE, "context": C.SESSION_CONTEXT,
    "session_metadata": C.SESSION_METADATA, "event": C.SESSION_EVENT, "user": C.USER, "model": C.MODEL,
    "input_tokens": C.INPUT_TOKENS, "output_tokens": C.OUTPUT_TOKENS, "total_tokens": C.TOTAL_TOKENS,
    "cache_read_tokens": C.CACHE_READ_TOKENS, "error_text": C.ERROR_TEXT, "abandoned": C.ABANDONED,
    "system": C.SYSTEM_INSTRUCTIONS, "finish_reason": C.FINISH_REASON, "tool_name": C.TOOL_NAME,
    "tool_call_id": C.TOOL_CALL_ID,
}
_LOOKUP: dict[str, list[tuple[str, int]]] = {}
for _concept, _keys in _PLAIN_CONCEPTS.items():
    for _rank, _key in enumerate(_keys):
        _LOOKUP.setdefault(_key, []).append((_concept, _rank))
for _concept, _sources in (("input", C.INPUT), ("output", C.OUTPUT)):
    for _rank, (_kind_name, _key) in enumerate(_sources):
        if _kind_name != "indexed":
            _LOOKUP.setdefault(_key, []).append((_concept, _rank))
        if _kind_name == "messages":  # also found when a higher source gives the text: the messages still count
            _LOOKUP.setdefault(_key, []).append((_concept + "_messages", _rank))


_JSON_PRESENT = "json fields"  # a pseudo-concept: one of C.JSON_FIELDS' keys is on the span
for _key, _fields, _consumed in C.JSON_FIELDS:
    _LOOKUP.setdefault(_key, []).append((_JSON_PRESENT, 0))

# Concepts that only some spans have: the content model's extra reading runs when one of them was found.
_RARE = frozenset({"input_messages", "output_messages", "system", "finish_reason", "tool_name", "tool_call_id"})
_WEAK_RANKS = frozenset(i for i, key in enumerate(C.SESSION_KEY) if key in C.WEAK_SESSION_KEYS)
_STRONG_KEYS = tuple(key for key in C.SESSION_KEY if key not in C.WEAK_SESSION_KEYS)


class _Plan:
    """What a set of attribute keys asks of the translator, worked out once per set of keys (spans of one producer
    come with the same keys, span after span): per plain concept its keys present in rank order, the keys that go
    to metadata, the indexed message prefixes present, and the probes of the kind and cost tables that can hit."""

    __slots__ = ("concepts", "cost", "extra", "indexed", "kept", "llm_markers", "session_event", "type_presence",
                 "type_sources")

    def __init__(self, keys: tuple[str, ...]) -> None:
        consumed, prefixes, lookup = C.CONSUMED_KEYS, C.CONSUMED_PREFIXES, _LOOKUP
        present = frozenset(keys)
        ranked: dict[str, list[tuple[int, str]]] = {}
        kept: list[str] = []  # keys of the table that stay in metadata too (when they have a value)
        extra: list[str] = []
        indexed: set[str] = set()
        for k in keys:
            hits = lookup.get(k)
            if hits is not None:
                for concept, rank in hits:
                    ranked.setdefault(concept, []).append((rank, k))
                if k not in consumed:
                    kept.append(k)
                continue
            if k in consumed:
                continue
            if k.startswith(prefixes):
                indexed.update(prefix for prefix in prefixes if k.startswith(prefix))
                continue
            extra.append(k)
        self.concepts = tuple((concept, tuple(sorted(hits))) for concept, hits in ranked.items())
        self.kept = tuple(kept)
        self.extra = tuple(extra)
        self.indexed = frozenset(indexed)
        self.session_event = C.SESSION_EVENT[0] in present
        self.llm_markers = tuple(probe for probe in C.LLM_MARKERS if probe[0] in present)
        self.type_sources = tuple(probe for probe in C.SPAN_TYPE_SOURCES if probe[0] in present)
        self.type_presence = tuple(probe for probe in C.SPAN_TYPE_PRESENCE if probe[0] in present)
        self.cost = tuple(probe for probe in C.COST if probe[1] in present)


_PLANS: dict[tuple[str, ...], _Plan] = {}
_SEEN: set[tuple[str, ...]] = set()  # sets of keys seen once: a plan is made for the second span that has them
_PLANS_MAX = 4096  # of each; a stream of ever new sets of keys (a fuzzer's) starts them over


def _plan(attrs: Attrs) -> _Plan | None:
    """The plan for the span's keys, or None the first time they are seen (the span is then read directly: a set
    of keys that never comes back costs no plan)."""
    keys = tuple(attrs)
    plan = _PLANS.get(keys)
    if plan is None:
        if keys not in _SEEN:
            if len(_SEEN) >= _PLANS_MAX:
                _SEEN.clear()
            _SEEN.add(keys)
            return None
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[keys] = _Plan(keys)
    return plan


def _scan(attrs: Attrs, plan: _Plan | None = None) -> tuple[dict[str, tuple[int, AttrValue]], dict[str, Any],
                                                          frozenset[str]]:
    """The best value of each plain concept (the first key in rank order with a value), the attributes no
    convention consumes, and which indexed message prefixes occur."""
    if plan is None:
        return _scan_keys(attrs)
    found: dict[str, tuple[int, AttrValue]] = {}
    for concept, hits in plan.concepts:
        for rank, key in hits:
            v = attrs[key]
            if v is not None and v != "":
                found[concept] = (rank, v)
                break
    extra: dict[str, Any] = {}
    for k in plan.kept:
        v = attrs[k]
        if v is not None and v != "":
            extra[k] = v
    for k in plan.extra:
        v = attrs[k]
        extra[k] = list(v) if isinstance(v, tuple) else v
    return found, extra, plan.indexed


def _scan_keys(attrs: Attrs) -> tuple[dict[str, tuple[int, AttrValue]], dict[str, Any], frozenset[str]]:
    """``_scan`` without a plan: one pass over the keys."""
    consumed, prefixes, lookup = C.CONSUMED_KEYS, C.CONSUMED_PREFIXES, _LOOKUP
    found: dict[str, tuple[int, AttrValue]] = {}
    extra: dict[str, Any] = {}
    indexed: set[str] = set()
    last = None  # the prefix of the last indexed key: the keys of one list come together
    for k, v in attrs.items():
        hits = lookup.get(k)
        if hits is not None:
            if v is None or v == "":
                continue
            for concept, rank in hits:
                best = found.get(concept)
                if best is None or rank < best[0]:
                    found[concept] = (rank, v)
            if k not in consumed:  # a JSON_FIELDS key that stays in metadata too
                extra[k] = v
            continue
        if k in consumed:
            continue
        if k.startswith(prefixes):
            if last is None or not k.startswith(last):
                for prefix in prefixes:
                    if k.startswith(prefix):
                        indexed.add(prefix)
                        last = prefix
            continue
        extra[k] = list(v) if isinstance(v, tuple) else v
    return found, extra, frozenset(indexed)


Content = tuple[str | None, list[M.Message] | None, str | None]  # text, normalized messages, raw JSON to keep


def _content(attrs: Attrs, concept: str, sources: tuple[C.Source, ...], found: dict[str, tuple[int, AttrValue]],
             indexed: frozenset[str], kind: str) -> Content:
    """The best content source present (a plain key found by the scan, or an indexed list ranked above it), read
    as the conventions table says: the row's text, the normalized messages when there are any, and the raw JSON
    the messages came from when it is small enough to keep beside them."""
    best = found.get(concept)
    best_rank = best[0] if best is not None else len(sources)
    if indexed and (best is None or kind in C.INDEXED_RANKED_KINDS):
        for source_kind, key in sources[:best_rank]:
            if source_kind == "indexed" and key in indexed:
                messages = M.from_indexed(attrs, key)
                if messages is not None:
                    return _pick(concept, messages), messages, None
    if best is None:
        return None, None, None
    source_kind, key = sources[best[0]]
    text = _text(best[1])
    if text is None:
        return None, None, None
    if source_kind == "vercel":
        messages = M.assistant_output(_text(attrs.get("ai.response.text")), attrs.get(C.VERCEL_TOOL_CALLS),
                                      _text(attrs.get("ai.response.finishReason")))
        return _text(attrs.get("ai.response.text")) or None, messages, None
    if source_kind == "messages" or (source_kind == "value" and kind in C.VALUE_MESSAGE_KINDS):
        decoded = M.loads(text)
        if decoded is not None:
            messages = M.from_request(decoded) if concept == "input" else M.from_response(decoded)
            if messages is not None:
                raw = text if source_kind == "value" and len(text) <= C.RAW_VALUE_KEEP_CHARS else None
                return _pick(concept, messages), messages, raw
            if source_kind == "value" and isinstance(decoded, dict) and not C.OPAQUE_VALUE_KEYS.isdisjoint(decoded):
                return None, None, text if len(text) <= C.RAW_VALUE_KEEP_CHARS else None
        elif source_kind == "value" and text.startswith(C.OPAQUE_VALUE_PREFIXES):
            return None, None, text if len(text) <= C.RAW_VALUE_KEEP_CHARS else None
    text = content_text(text)
    if kind == "TOOL" and concept == "input":
        text = M.tool_arguments(text, C.TOOL_INPUT_ENVELOPES)
    return text, None, None


def _pick(concept: str, messages: list[M.Message]) -> str | None:
    return M.user_text(messages) if concept == "input" else M.reply_text(messages)


def _messages(attrs: Attrs, concept: str, sources: tuple[C.Source, ...], found: dict[str, tuple[int, AttrValue]],
              indexed: frozenset[str]) -> list[M.Message] | None:
    """Messages from the best message source present, when the text came from a source of its own (our
    ``galtea.span.input`` beside ``gen_ai.input.messages``)."""
    hit = found.get(concept + "_messages")
    for source_kind, key in sources:
        if source_kind == "indexed" and key in indexed:
            messages = M.from_indexed(attrs, key)
        elif source_kind == "messages" and hit is not None and sources[hit[0]][1] == key:
            decoded = M.loads(_text(hit[1]))
            messages = M.from_request(decoded) if concept == "input" else M.from_response(decoded)
        else:
            continue
        if messages is not None:
            return messages
    return None


def _response_model(attrs: Attrs) -> str | None:
    """The model that replied, from a response envelope (``C.RESPONSE_MODEL_FIELDS``); None when there is none."""
    for key, needle, paths in C.RESPONSE_MODEL_FIELDS:
        value = attrs.get(key)
        if not isinstance(value, str) or needle not in value:
            continue
        decoded = M.loads(value)
        for path in paths:
            node: Any = decoded
            for step in path:
                if isinstance(step, int):
                    node = node[step] if isinstance(node, list) and len(node) > step else None
                else:
                    node = node.get(step) if isinstance(node, dict) else None
                if node is None:
                    break
            if isinstance(node, str) and node:
                return node
    return None


def _finish_reason(value: AttrValue) -> str | None:
    if isinstance(value, (list, tuple)):
        return _text(value[0]) if value else None
    text = _text(value)
    if text and text[:1] == "[":
        decoded = M.loads(text)
        if isinstance(decoded, list):
            return str(decoded[0]) if decoded else None
    return text


def _metadata(extra: dict[str, Any], user: AttrValue) -> str | None:
    if user is not None:
        extra["user_id"] = user
    if not extra:
        return None
    return _json_dumps(extra)


_METADATA_JSON = M.json_encoder(ensure_ascii=False, sort_keys=True, default=str, allow_nan=False)  # made once


def _json_dumps(value: dict[str, Any]) -> str:
    """Strict JSON text: NaN and infinities (OTLP allows them in doubles, arrays of doubles included) are kept as
    text ("nan", "inf"), since NaN is not JSON and what reads the metadata (the Galtea sync) refuses it."""
    try:
        return _METADATA_JSON(value)
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


_HEX = "0123456789abcdef"
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _hex_id(value: str, length: int) -> bool:
    """``value`` is ``length`` lower-case hex digits (stripping every hex digit leaves nothing: one C call, a
    fraction of a regular expression's match, on every span)."""
    return len(value) == length and not value.strip(_HEX)


def check_ids(span: SpanData) -> None:
    """Raise InvalidSpan unless the ids are lower-case hex of the right length and not all zero."""
    trace_id, span_id = span.trace_id, span.span_id
    if not _hex_id(trace_id, 32) or trace_id == _ZERO_TRACE:
        raise InvalidSpan(f"invalid trace_id {trace_id[:40]!r}: expected 32 hex characters, not all zero")
    if not _hex_id(span_id, 16) or span_id == _ZERO_SPAN:
        raise InvalidSpan(f"invalid span_id {span_id[:40]!r}: expected 16 hex characters, not all zero")
    parent = span.parent_span_id
    if parent is not None and not _hex_id(parent, 16):
        raise InvalidSpan(f"invalid parent_span_id {parent[:40]!r}: expected 16 hex characters")
    if not (0 <= span.start_ns < _INT64 and 0 <= span.end_ns < _INT64):
        raise InvalidSpan(f"timestamps out of range: start {span.start_ns}, end {span.end_ns} (nanoseconds)")


Redactor = Callable[[str], str]
# The last resource read and what it gave: the spans of one export share their resource object.
_last_resource: tuple[Attrs, str | None, str | None] | None = None


def _resource_fields(resource: Attrs) -> tuple[str | None, str | None]:
    """The resource's version and test case."""
    global _last_resource
    last = _last_resource
    if last is not None and last[0] is resource:
        return last[1], last[2]
    version = _text(_first(resource, C.RESOURCE_VERSION))
    test_case = _text(_first(resource, C.RESOURCE_TEST_CASE))
    _last_resource = (resource, version, test_case)
    return version, test_case


_POSITIONAL = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "start_ns", "end_ns", "status", "error",
    "session_event", "own_custom_id", "own_version", "resource_version", "custom_id", "version", "test_case_id",
    "context", "input", "output", "model", "input_tokens", "output_tokens", "cache_read_tokens", "total_tokens",
    "cost", "abandoned", "metadata", "received_ns", "user_id", "key_weak", "input_messages", "output_messages",
    "finish_reason", "evaluations",
)
if COLUMNS[:len(_POSITIONAL)] != _POSITIONAL:  # translate() builds its rows positionally
    raise RuntimeError(f"SpanRow's fields changed order: {COLUMNS}")


def translate(span: SpanData, *, redact: Redactor | None = None, received_ns: int | None = None) -> SpanRow:
    """Read one span through the conventions table. Raises InvalidSpan for ids that cannot be stored."""
    check_ids(span)
    attrs = span.attributes
    plan = _plan(attrs)
    kind = _kind(attrs, span.name, plan)
    failed, error = _error(span, attrs)
    found, extra, indexed = _scan(attrs, plan)

    if _JSON_PRESENT in found:  # a JSON object attribute with fields: for the concepts no plain key gave
        del found[_JSON_PRESENT]
        missing = C.JSON_CONCEPTS - found.keys()
        if missing:
            for concept, value in _json_fields(attrs, missing).items():
                found[concept] = (0, value)

    values = {concept: hit[1] for concept, hit in found.items()}  # one pass, then plain lookups
    get = values.get

    custom_id = _text(get("custom_id"))
    version = _text(get("version"))
    resource_version, resource_test_case = _resource_fields(span.resource)
    test_case = _text(get("test_case")) or resource_test_case
    inp, in_messages, in_raw = _content(attrs, "input", C.INPUT, found, indexed, kind)
    out, out_messages, out_raw = _content(attrs, "output", C.OUTPUT, found, indexed, kind)
    if kind == "TOOL" and out is not None:
        out, result_call_id = M.tool_result(out, C.TOOL_OUTPUT_ENVELOPES)
        if result_call_id is not None and "tool_call_id" not in found:
            found["tool_call_id"] = (0, result_call_id)
            values["tool_call_id"] = result_call_id
    if in_raw is not None:
        extra["input.raw"] = in_raw
    if out_raw is not None:
        extra["output.raw"] = out_raw
    input_messages = output_messages = finish = None
    if in_messages is not None or out_messages is not None or indexed or not _RARE.isdisjoint(found):
        if in_messages is None and ("input_messages" in found or indexed):
            in_messages = _messages(attrs, "input", C.INPUT, found, indexed)
        if out_messages is None and ("output_messages" in found or indexed):
            out_messages = _messages(attrs, "output", C.OUTPUT, found, indexed)
        system = get("system")
        if system is not None:
            in_messages = M.with_system(in_messages or [], _text(system))
        finish = _finish_reason(get("finish_reason"))
        if finish is None and out_messages:
            finish = M.finish_reason_of(out_messages)
        tool_name, tool_call_id = get("tool_name"), get("tool_call_id")
        if tool_name is not None:
            extra["tool.name"] = tool_name
        if tool_call_id is not None:
            extra["tool.call_id"] = tool_call_id
        input_messages = M.dumps(in_messages) if in_messages else None
        output_messages = M.dumps(out_messages) if out_messages else None
    key_rank = found.get("custom_id")
    key_weak = key_rank is not None and key_rank[0] in _WEAK_RANKS
    if key_weak:  # an application's key on the same span beats the library's own, whatever their ranks
        strong = _first(attrs, _STRONG_KEYS)
        if strong is not None:
            custom_id, key_weak = _text(strong), False
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
    model = get("model")
    if model is not None and kind == KIND_LLM and found["model"][0] > 0:  # a key that may hold the requested one
        model = _response_model(attrs) or model
    # Positional, in SpanRow's field order (_POSITIONAL, checked at import): a call with 33 keywords cost 1.4 us a span
    # more than this one (458.7K -> 444.2K instructions a span, bench_export_instructions.py).
    row = SpanRow(
        span.trace_id,  # trace_id
        span.span_id,  # span_id
        span.parent_span_id,  # parent_span_id
        clean_text(span.name) or "",  # name
        kind,  # kind
        span.start_ns,  # start_ns
        max(span.end_ns, span.start_ns),  # end_ns
        STATUS_ERROR if failed else span.status_code,  # status
        None if error is None else clean_text(error),  # error
        None if event is None else clean_text(event),  # session_event
        None if custom_id is None else clean_text(custom_id),  # own_custom_id
        None if version is None else clean_text(version),  # own_version
        None if resource_version is None else clean_text(resource_version),  # resource_version
        None,  # custom_id; resolved later (Pipeline)
        None,  # version
        None if test_case is None else clean_text(test_case),  # test_case_id
        None if context is None else clean_text(context),  # context
        None if inp is None else clean_text(inp),  # input
        None if out is None else clean_text(out),  # output
        None if model is None else clean_text(_text(model)),  # model
        input_tokens,  # input_tokens
        output_tokens,  # output_tokens
        _int(get("cache_read_tokens")),  # cache_read_tokens
        total,  # total_tokens
        _cost(attrs) if plan is None else _cost(attrs, plan.cost) if plan.cost else None,  # cost
        bool(get("abandoned")),  # abandoned
        None if metadata is None else clean_text(metadata),  # metadata
        received_ns if received_ns is not None else time.time_ns(),  # received_ns
        None if user is None else clean_text(_text(user)),  # user_id
        key_weak,  # key_weak
        None if input_messages is None else clean_text(input_messages),  # input_messages
        None if output_messages is None else clean_text(output_messages),  # output_messages
        None if finish is None else clean_text(finish),  # finish_reason
        span_evaluations(span.events, redact) if span.events else None,  # evaluations; issue 11
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
