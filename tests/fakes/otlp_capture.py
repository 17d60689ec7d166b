"""An OTLP/HTTP pass-through on 127.0.0.1 that keeps a decoded copy of every span it forwards.

Apps export to it as to a receiver; it forwards each request's bytes (headers that matter included) to the
real receiver and answers with the receiver's answer, so the app sees the receiver exactly. A chunked request
body (no Content-Length, as the Node.js exporter sends) is forwarded chunked too, so the receiver reads what the
app sent; :meth:`OtlpCapture.headers` keeps each request's headers as they came. :meth:`OtlpCapture.spans` gives
every span as plain JSON-able data (ids in hex, attribute values decoded), for the span dumps and for tests that
look at what a producer really sent.
"""

from __future__ import annotations

import gzip
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

_FORWARDED = ("content-type", "content-encoding", "authorization")


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        out[pair.key] = any_value(pair.value)
    return out


def decode(body: bytes, content_type: str, encoding: str) -> list[dict[str, Any]]:
    """The spans of one OTLP/HTTP export request, each with its resource and scope."""
    if encoding in ("gzip", "x-gzip"):
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    request = ExportTraceServiceRequest()
    if content_type.split(";")[0].strip() == "application/json":
        json_format.Parse(body.decode(), request, ignore_unknown_fields=True)
    else:
        request.ParseFromString(body)
    spans: list[dict[str, Any]] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
            for span in scope_spans.spans:
                spans.append({
                    "name": span.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "kind": Span.SpanKind.Name(span.kind),
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "status": {"code": Status.StatusCode.Name(span.status.code), "message": span.status.message},
                    "attributes": attributes(span.attributes),
                    "events": [{"name": e.name, "time_unix_nano": e.time_unix_nano,
                                "attributes": attributes(e.attributes)} for e in span.events],
                    "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                               "attributes": attributes(link.attributes)} for link in span.links],
                    "scope": scope,
                    "resource": resource,
                })
    return spans


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and body go in separate writes (else ~40 ms a reply)
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        body = self._body()
        with self.server.lock:
            self.server.headers.append({k.lower(): v for k, v in self.headers.items()})
        headers = {k: v for k in _FORWARDED if (v := self.headers.get(k)) is not None}
        # An iterable body and no Content-Length: urllib sends it chunked.
        data: bytes | Iterator[bytes] = iter([body]) if chunked else body
        request = urllib.request.Request(self.server.upstream + self.path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, answer = response.status, response.read()
                answer_type = response.headers.get("Content-Type") or "application/x-protobuf"
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
            answer_type = exc.headers.get("Content-Type") or "text/plain"
        with self.server.lock:
            self.server.statuses.append(status)
            if status == 200:
                self.server.spans.extend(decode(body, headers.get("content-type", ""),
                                                headers.get("content-encoding", "").strip().lower()))
        self.send_response(status)
        self.send_header("Content-Type", answer_type)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: str
    spans: list[dict[str, Any]]
    statuses: list[int]
    headers: list[dict[str, str]]
    lock: threading.Lock


class OtlpCapture:
    """Forwards to ``upstream`` (``http://host:port``), started on a free 127.0.0.1 port on ``__enter__``."""

    def __init__(self, upstream: str) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = upstream.rstrip("/")
        self._server.spans = []
        self._server.statuses = []
        self._server.headers = []
        self._server.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def spans(self) -> list[dict[str, Any]]:
        with self._server.lock:
            return list(self._server.spans)

    @property
    def statuses(self) -> list[int]:
        """The receiver's HTTP status for each export request, in order."""
        with self._server.lock:
            return list(self._server.statuses)

    @property
    def headers(self) -> list[dict[str, str]]:
        """Each export request's headers as the app sent them (names in lower case), in order."""
        with self._server.lock:
            return list(self._server.headers)

    def __enter__(self) -> OtlpCapture:
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
