"""OTLP/JSON ``ExportTraceServiceRequest`` -> :class:`~galtea_otel.spandata.SpanData`, by a direct walk.

``json.loads`` then a walk over plain dicts: an order of magnitude faster than protobuf's
``json_format.Parse``. It follows the OTLP/JSON rules: ids are hex (any case, stored lower case), enums are
integers (their names are accepted too), keys are lowerCamelCase (the proto snake_case names are accepted
too), 64-bit integers may be strings, unknown fields are ignored. Base64 ids (the generic protobuf JSON
mapping) are rejected, span by span.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import Any

from galtea_otel.decode.common import (
    INT64_MAX,
    INT64_MIN,
    MAX_UINT63,
    DecodeError,
    DecodeResult,
    InvalidSpan,
    homogeneous_array,
    shown,
    to_json_text,
)
from galtea_otel.spandata import AttrValue, EventData, SpanData

__all__ = ["DecodeError", "DecodeResult", "decode_json"]

_HEX = "0123456789abcdef"
# What walking a JSON value of an unexpected shape can raise; it rejects that span.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError)
_ZERO_SPAN = "0" * 16


class Unrepresentable:
    """A JSON number Python cannot hold (an integer of more digits than ``int`` parses, 4,300 by default): put
    in its place while parsing, so that only the span holding it is rejected, not the whole request."""

    __slots__ = ("digits",)

    def __init__(self, text: str) -> None:
        self.digits = len(text)

    def __repr__(self) -> str:
        return f"<a {self.digits}-digit number>"


class UnrepresentableValue(InvalidSpan):
    """A value holds an :class:`Unrepresentable` number: its span (or its resource's spans) is rejected."""


def _parse_int(text: str) -> int | Unrepresentable:
    try:
        return int(text)
    except ValueError:
        return Unrepresentable(text)


def decode_json(body: bytes) -> DecodeResult:
    """Decode an OTLP/JSON body; raise :class:`DecodeError` if it is not JSON or not shaped like a request."""
    if not body.strip():
        return DecodeResult()
    try:
        doc = json.loads(body)
    except ValueError:
        # Perhaps a huge integer (int() refuses it): parse again with a hook that keeps it as a marker, which
        # rejects the span holding it. Only then, so the usual body keeps the fast C parser's int path.
        try:
            doc = json.loads(body, parse_int=_parse_int)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise DecodeError(f"not JSON: {exc}") from None
    except RecursionError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if type(doc) is not dict:
        raise DecodeError("an OTLP/JSON request is a JSON object")
    result = DecodeResult()
    spans = result.spans
    for r, resource_spans in enumerate(_list(doc, "resourceSpans", "resource_spans", "request")):
        where_r = f"resourceSpans[{r}]"
        _require_object(resource_spans, where_r)
        resource_obj = _get(resource_spans, "resource", "resource")
        if resource_obj is not None:
            _require_object(resource_obj, f"{where_r}.resource")
        try:
            resource = _attributes(_get(resource_obj, "attributes", "attributes")) if resource_obj else {}
        except UnrepresentableValue as exc:  # a huge number in the resource: its spans are rejected, not the request
            _reject_resource(result, resource_spans, where_r, f"resource: {exc}")
            continue
        except _MALFORMED as exc:
            raise DecodeError(f"{where_r}.resource: malformed attributes: {exc}") from None
        scope_list = _get(resource_spans, "scopeSpans", "scope_spans")
        if scope_list is None:  # OTLP < 0.15
            scope_list = _get(resource_spans, "instrumentationLibrarySpans", "instrumentation_library_spans")
        for s, scope_spans in enumerate(_as_list(scope_list, f"{where_r}.scopeSpans")):
            where_s = f"{where_r}.scopeSpans[{s}]"
            _require_object(scope_spans, where_s)
            scope_obj = _get(scope_spans, "scope", "scope")
            if scope_obj is None:
                scope_obj = _get(scope_spans, "instrumentationLibrary", "instrumentation_library")
            if scope_obj is not None:
                _require_object(scope_obj, f"{where_s}.scope")
            scope = _get(scope_obj, "name", "name") if scope_obj else ""
            if scope is None:
                scope = ""
            elif type(scope) is not str:
                raise DecodeError(f"{where_s}.scope.name: not a string")
            for i, span in enumerate(_as_list(_get(scope_spans, "spans", "spans"), f"{where_s}.spans")):
                try:
                    spans.append(_span(span, resource, scope))
                except InvalidSpan as exc:
                    result.reject(f"{where_s}.spans[{i}]", str(exc))
                except _MALFORMED as exc:
                    result.reject(f"{where_s}.spans[{i}]", f"malformed span ({type(exc).__name__}: {exc})")
    return result


def _reject_resource(result: DecodeResult, resource_spans: dict[str, Any], where: str, reason: str) -> None:
    scope_list = _get(resource_spans, "scopeSpans", "scope_spans") or []
    if type(scope_list) is not list:
        raise DecodeError(f"{where}.scopeSpans: not a list")
    for s, scope_spans in enumerate(scope_list):
        spans = _get(scope_spans, "spans", "spans") if type(scope_spans) is dict else None
        for i in range(len(spans) if type(spans) is list else 0):
            result.reject(f"{where}.scopeSpans[{s}].spans[{i}]", reason)


def _span(span: Any, resource: dict[str, AttrValue], scope: str) -> SpanData:
    if type(span) is not dict:
        raise InvalidSpan("a span is a JSON object")
    get = span.get
    trace_id = _hex_id(_get(span, "traceId", "trace_id"), 32, "traceId")
    span_id = _hex_id(_get(span, "spanId", "span_id"), 16, "spanId")
    parent = _get(span, "parentSpanId", "parent_span_id")
    parent_id = _parent_id(parent) if parent else None
    name = get("name", "")
    if type(name) is not str:
        raise InvalidSpan("name: not a string")
    start = _time(_get(span, "startTimeUnixNano", "start_time_unix_nano"))
    end = _time(_get(span, "endTimeUnixNano", "end_time_unix_nano"))
    status_code = 0
    status_message = ""
    status = get("status")
    if status:
        if type(status) is not dict:
            raise InvalidSpan("status: not an object")
        code = status.get("code")
        if code is not None:
            status_code = _status_code(code)
        status_message = status.get("message") or ""
        if type(status_message) is not str:
            raise InvalidSpan("status.message: not a string")
    attributes = get("attributes")
    events = get("events")
    return SpanData(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_id,
        name=name,
        start_ns=start,
        end_ns=end,
        status_code=status_code,
        status_message=status_message,
        attributes=_attributes(attributes) if attributes else {},
        events=tuple(_event(event) for event in _as_span_list(events, "events")) if events else (),
        resource=resource,
        scope=scope,
    )


def _event(event: Any) -> EventData:
    if type(event) is not dict:
        raise InvalidSpan("an event is a JSON object")
    name = event.get("name", "")
    if type(name) is not str:
        raise InvalidSpan("event name: not a string")
    attributes = event.get("attributes")
    return EventData(
        name=name,
        time_ns=_time(_get(event, "timeUnixNano", "time_unix_nano")),
        attributes=_attributes(attributes) if attributes else {},
    )


def _hex_id(value: Any, length: int, field_name: str) -> str:
    """A hex id in any case -> lower case; wrong length, non-hex (base64...) and all-zero ids are invalid."""
    if type(value) is not str:
        raise InvalidSpan(f"{field_name}: missing or not a string")
    lowered = value.lower()
    if len(lowered) != length or lowered.strip(_HEX):
        raise InvalidSpan(f"invalid {field_name} {shown(value)} (want {length} hex characters)")
    if lowered == ("0" * length):
        raise InvalidSpan(f"invalid {field_name}: all zero")
    return lowered


def _parent_id(value: Any) -> str | None:
    """Like a span id, but an all-zero parent means no parent."""
    if value == _ZERO_SPAN:
        return None
    return _hex_id(value, 16, "parentSpanId")


def _time(value: Any) -> int:
    """A uint64 nanosecond timestamp: a number or (OTLP/JSON's usual form) a decimal string; missing -> 0."""
    if value is None:
        return 0
    kind = type(value)
    if kind is str:
        if not (value.isascii() and value.isdigit()):
            raise InvalidSpan(f"invalid timestamp {shown(value)}")
        number = int(value)
    elif kind is int:
        number = value
    elif kind is float and value.is_integer():
        number = int(value)
    else:
        raise InvalidSpan(f"invalid timestamp {shown(value)}")
    if not 0 <= number < MAX_UINT63:
        raise InvalidSpan(f"timestamp out of range {shown(value)}")
    return number


def _status_code(code: Any) -> int:
    """0 unset, 1 ok, 2 error; the enum names are accepted; an unknown number is kept as unset."""
    kind = type(code)
    if kind is str:
        named = _STATUS_NAMES.get(code)
        if named is not None:
            return named
        if code.isascii() and code.isdigit():
            code = int(code)
            kind = int
    if kind is int:
        return code if 0 <= code <= 2 else 0
    raise InvalidSpan(f"invalid status code {shown(code)}")


_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


# ------------------------------------------------------------------------------------------------- attributes


def _attributes(kvs: Any) -> dict[str, AttrValue]:
    if type(kvs) is not list:
        raise InvalidSpan("attributes: not a list")
    out: dict[str, AttrValue] = {}
    for kv in kvs:
        key = kv.get("key", "")
        if type(key) is not str:
            raise InvalidSpan(f"attribute key {shown(key)}: not a string")
        value = kv.get("value")
        if value is None:
            out[key] = None
            continue
        string = value.get("stringValue") if type(value) is dict else None
        # Most attributes are strings: take them without a call.
        out[key] = string if type(string) is str else _value(value)
    return out


def _value(value: Any) -> Any:
    """An AnyValue as an attribute value (scalars; arrays of one scalar type as tuples; else JSON)."""
    if type(value) is not dict:
        raise InvalidSpan(f"attribute value {shown(value)}: not an object")
    for kind, raw in value.items():
        convert = _CONVERTERS.get(kind)
        if convert is not None:
            return convert(raw)
    return None  # an empty AnyValue, or only unknown fields


def _plain(value: Any) -> Any:
    """An AnyValue as plain JSON-able Python, for nested values rendered as JSON text."""
    if type(value) is not dict:
        raise InvalidSpan(f"nested value {shown(value)}: not an object")
    for kind, raw in value.items():
        if kind in ("arrayValue", "array_value"):
            return [_plain(item) for item in _values(raw)]
        if kind in ("kvlistValue", "kvlist_value"):
            return {_key(kv): _plain(kv.get("value") or {}) for kv in _values(raw)}
        if kind in ("bytesValue", "bytes_value"):
            _bytes(raw)  # validated; kept as its base64 text
            return raw
        convert = _CONVERTERS.get(kind)
        if convert is not None:
            return convert(raw)
    return None


def _values(raw: Any) -> list[Any]:
    if type(raw) is not dict:
        raise InvalidSpan("arrayValue / kvlistValue: not an object")
    values = raw.get("values") or []
    if type(values) is not list:
        raise InvalidSpan("values: not a list")
    return values


def _key(kv: Any) -> str:
    key = kv.get("key", "")
    if type(key) is not str:
        raise InvalidSpan(f"key {shown(key)}: not a string")
    return key


def _string(raw: Any) -> str:
    if type(raw) is not str:
        raise InvalidSpan(f"stringValue {shown(raw)}: not a string")
    return raw


def _bool(raw: Any) -> bool:
    if type(raw) is not bool:
        raise InvalidSpan(f"boolValue {shown(raw)}: not a boolean")
    return raw


def _int(raw: Any) -> int:
    kind = type(raw)
    if kind is Unrepresentable:
        raise UnrepresentableValue(f"intValue {raw!r}: not an integer")
    number: int
    if kind is int:
        number = raw
    elif (kind is float and raw.is_integer()) or (
        kind is str and raw.isascii() and raw.removeprefix("-").isdigit()
    ):
        number = int(raw)
    else:
        raise InvalidSpan(f"intValue {shown(raw)}: not an integer")
    if not INT64_MIN <= number <= INT64_MAX:
        raise InvalidSpan(f"intValue {shown(raw)}: out of the int64 range")
    return number


def _double(raw: Any) -> float:
    kind = type(raw)
    if kind is Unrepresentable:
        raise UnrepresentableValue(f"doubleValue {raw!r}: out of range")
    if kind is float or kind is int:
        return float(raw)
    if kind is str:  # "NaN", "Infinity", "-Infinity", or a number in a string
        try:
            return float(raw)
        except ValueError:
            pass
    raise InvalidSpan(f"doubleValue {shown(raw)}: not a number")


def _bytes(raw: Any) -> bytes:
    if type(raw) is not str:
        raise InvalidSpan(f"bytesValue {shown(raw)}: not a base64 string")
    try:
        return binascii.a2b_base64(raw.replace("-", "+").replace("_", "/"), strict_mode=False)
    except binascii.Error:
        raise InvalidSpan(f"bytesValue {shown(raw)}: not base64") from None


def _array(raw: Any) -> Any:
    return homogeneous_array([_plain(item) for item in _values(raw)])


def _kvlist(raw: Any) -> str:
    return to_json_text({_key(kv): _plain(kv.get("value") or {}) for kv in _values(raw)})


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "stringValue": _string,
    "string_value": _string,
    "intValue": _int,
    "int_value": _int,
    "boolValue": _bool,
    "bool_value": _bool,
    "doubleValue": _double,
    "double_value": _double,
    "bytesValue": _bytes,
    "bytes_value": _bytes,
    "arrayValue": _array,
    "array_value": _array,
    "kvlistValue": _kvlist,
    "kvlist_value": _kvlist,
}


# -------------------------------------------------------------------------------------------------- structure


def _get(obj: Any, camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _list(doc: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    return _as_list(_get(doc, camel, snake), f"{where}.{camel}")


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise DecodeError(f"{where}: not a list")
    return value


def _as_span_list(value: Any, where: str) -> list[Any]:
    if type(value) is not list:
        raise InvalidSpan(f"{where}: not a list")
    return value


def _require_object(value: Any, where: str) -> None:
    if type(value) is not dict:
        raise DecodeError(f"{where}: not a JSON object")
