"""OTLP logs (``POST /v1/logs``) carrying ``gen_ai.evaluation.result`` events, as the spans the pipeline reads.

Each evaluation log record becomes one zero-length *carrier* span: a marker (``galtea.session.event`` =
``evaluation``, never a turn nor a span of the session) in the log's trace, child of the evaluated span (the
log's span context), holding the record as its ``gen_ai.evaluation.result`` event. So the evaluation takes the
span path: its session key resolves through its trace, it is stored once (the carrier's id is a digest of the
record), and it lands on the turn holding the evaluated span. A record without a span context must carry the
session key (``gen_ai.conversation.id``, ``session.id`` or ``galtea.session.custom_id``): it scores the session.
Log records of other events are ignored; evaluation records that cannot be placed are rejected (partial success).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from galtea_otel.decode.common import DecodeError, DecodeResult
from galtea_otel.evaluate.events import ATTR_TARGET, EVENT_EVALUATION
from galtea_otel.spandata import AttrValue, EventData, SpanData

EVENT_NAME_ATTR = "event.name"
_KEY_ATTRS = ("galtea.session.custom_id", "galtea.session.version", "gen_ai.conversation.id", "session.id")


def _carrier(result: DecodeResult, where: str, trace_id: str, span_id: str, time_ns: int,
             attrs: Mapping[str, AttrValue], resource: Mapping[str, AttrValue], event_name: str) -> None:
    if event_name != EVENT_EVALUATION and attrs.get(EVENT_NAME_ATTR) != EVENT_EVALUATION:
        return
    key = {k: attrs[k] for k in _KEY_ATTRS if attrs.get(k) not in (None, "")}
    event_attrs = {k: v for k, v in attrs.items() if k != EVENT_NAME_ATTR}
    if not trace_id:
        if not key:
            result.reject(where, "an evaluation log record needs a span context or a session key"
                                 " (gen_ai.conversation.id / session.id)")
            return
        event_attrs[ATTR_TARGET] = "session"
    digest = hashlib.sha256(json.dumps([trace_id, span_id, time_ns, sorted(attrs.items(), key=str)],
                                       default=str).encode()).hexdigest()
    result.spans.append(SpanData(
        trace_id=trace_id or digest[:32], span_id=digest[32:48], parent_span_id=span_id or None,
        name=EVENT_EVALUATION, start_ns=time_ns, end_ns=time_ns,
        attributes={**key, "galtea.session.event": "evaluation"},
        events=(EventData(EVENT_EVALUATION, time_ns, event_attrs),), resource=dict(resource), scope="otlp-logs"))


def decode_logs_proto(body: bytes) -> DecodeResult:
    from google.protobuf.message import Error as ProtobufError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from galtea_otel.decode.otlp_proto import _attributes

    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except ProtobufError as exc:
        raise DecodeError(f"not an OTLP ExportLogsServiceRequest: {exc}") from None
    result = DecodeResult()
    for r, resource_logs in enumerate(request.resource_logs):
        resource = _attributes(resource_logs.resource.attributes)
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            for n, record in enumerate(scope_logs.log_records):
                trace_id, span_id = record.trace_id.hex(), record.span_id.hex()
                if (trace_id and len(trace_id) != 32) or (span_id and len(span_id) != 16):
                    result.reject(f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}]", "invalid trace or span id")
                    continue
                _carrier(result, f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}]", trace_id, span_id,
                         record.time_unix_nano or record.observed_time_unix_nano, _attributes(record.attributes),
                         resource, getattr(record, "event_name", ""))
    return result


def decode_logs_json(body: bytes) -> DecodeResult:
    from galtea_otel.decode.otlp_json import _attributes, _time

    try:
        request: Any = json.loads(body)
    except ValueError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise DecodeError("an OTLP/JSON logs request is an object with resourceLogs")
    result = DecodeResult()
    for r, resource_logs in enumerate(request.get("resourceLogs") or []):
        try:
            resource = _attributes(((resource_logs or {}).get("resource") or {}).get("attributes") or [])
            scopes = list(resource_logs.get("scopeLogs") or [])
        except (AttributeError, TypeError, ValueError) as exc:
            raise DecodeError(f"resourceLogs[{r}]: {exc}") from None
        for s, scope_logs in enumerate(scopes):
            for n, record in enumerate((scope_logs or {}).get("logRecords") or []):
                where = f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{n}]"
                try:
                    trace_id = str(record.get("traceId") or "").lower()
                    span_id = str(record.get("spanId") or "").lower()
                    if (trace_id and len(trace_id) != 32) or (span_id and len(span_id) != 16):
                        raise DecodeError("invalid trace or span id")
                    _carrier(result, where, trace_id, span_id,
                             _time(record.get("timeUnixNano") or record.get("observedTimeUnixNano") or 0),
                             _attributes(record.get("attributes") or []), resource, str(record.get("eventName") or ""))
                except (DecodeError, AttributeError, TypeError, ValueError) as exc:
                    result.reject(where, str(exc))
    return result
