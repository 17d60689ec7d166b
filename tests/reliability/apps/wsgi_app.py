"""A tiny WSGI application instrumented with galtea-otel at import, for gunicorn ``--preload``.

galtea-otel is configured when the module is imported, in gunicorn's master, before it forks its workers;
spans go over OTLP/HTTP to ``$GALTEA_TEST_ENDPOINT``. Each request (``GET /``) records one session of
``SPANS_PER_REQUEST`` spans (the session span, its start marker, 8 turns) with the worker's pid in its custom
id, until the worker has recorded ``$GALTEA_TEST_SPANS_PER_WORKER`` spans; after that it answers 429 (the
test's client goes on until every worker is full). The body is ``<pid> <spans recorded by this worker>``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import galtea_otel

SPANS_PER_REQUEST = 10
PER_WORKER = int(os.environ.get("GALTEA_TEST_SPANS_PER_WORKER", "500"))

galtea_otel.configure(
    tracer_provider=TracerProvider(resource=Resource.create({"service.name": "gunicorn-app"})),
    exporter=OTLPSpanExporter(endpoint=os.environ["GALTEA_TEST_ENDPOINT"], timeout=10),
)

_lock = threading.Lock()
_recorded = 0
_sessions = 0


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    return prompt[::-1]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _recorded, _sessions
    with _lock:
        full = _recorded + SPANS_PER_REQUEST > PER_WORKER
        if not full:
            _recorded += SPANS_PER_REQUEST
            _sessions += 1
            number = _sessions
    if not full:
        with galtea_otel.session(custom_id=f"pid{os.getpid()}-{number:03d}", version="1"):
            for turn in range(SPANS_PER_REQUEST - 2):
                chat(f"turn {turn}")
    start_response("429 Too Many Requests" if full else "200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {_recorded}".encode()]
