"""A retrying OTLP/HTTP client, as a process: real galtea-otel sessions sent in explicit batches.

``python otlp_client.py ENDPOINT OUT_DIR [SESSIONS] [SPANS_PER_SESSION] [BATCH] [SENDERS]``

It records SESSIONS sessions of SPANS_PER_SESSION spans each (the session span, its start marker, and
inferences) with galtea-otel into memory, writes every ``trace_id:span_id`` to ``OUT_DIR/manifest``, then sends
them in batches of BATCH spans from SENDERS threads with the real ``OTLPSpanExporter``. A batch the exporter
could not deliver (it retries 503 and connection errors within its own timeout, then gives up) is sent again
until it is acknowledged, as a real client re-sends what it still holds. Each acknowledged batch (a 2xx
answer) is appended to ``OUT_DIR/acked`` (one line per span, the batch in one write) the moment it is
acknowledged. At the end it prints a JSON line: batches, attempts, failed attempts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import galtea_otel


def record(sessions: int, spans_per_session: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "crash-client"}), shutdown_on_exit=False)
    galtea_otel.configure(tracer_provider=provider, exporter=memory, max_queue_size=sessions * spans_per_session)

    @galtea_otel.inference(model="fake-1")
    def chat(prompt: str) -> str:
        return prompt.upper()

    for s in range(sessions):
        with galtea_otel.session(custom_id=f"crash-{s:03d}", version="1"):
            for turn in range(spans_per_session - 2):  # + the session span and its start marker
                chat(f"s{s} t{turn}")
    assert galtea_otel.shutdown(timeout_s=30)
    spans = list(memory.get_finished_spans())
    assert len(spans) == sessions * spans_per_session, len(spans)
    return spans


def span_key(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}:{span.context.span_id:016x}"


def main() -> None:
    endpoint, out = sys.argv[1], Path(sys.argv[2])
    sessions, per_session, batch_size, senders = (int(a) for a in [*sys.argv[3:], "100", "100", "100", "2"][:4])
    spans = record(sessions, per_session)
    (out / "manifest").write_text("".join(span_key(s) + "\n" for s in spans))
    batches = [spans[i:i + batch_size] for i in range(0, len(spans), batch_size)]
    acked = os.open(out / "acked", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    lock = threading.Lock()
    counts = {"batches": len(batches), "attempts": 0, "failed_attempts": 0}
    print("sending", flush=True)

    def sender(mine: list[list[ReadableSpan]]) -> None:
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=5)
        for batch in mine:
            while True:
                result = exporter.export(batch)
                with lock:
                    counts["attempts"] += 1
                    if result is SpanExportResult.SUCCESS:
                        os.write(acked, "".join(span_key(s) + "\n" for s in batch).encode())
                        break
                    counts["failed_attempts"] += 1
                time.sleep(0.2)
        exporter.shutdown()  # type: ignore[no-untyped-call]

    threads = [threading.Thread(target=sender, args=(batches[i::senders],)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.close(acked)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
