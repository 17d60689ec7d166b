"""An application using galtea-otel's in-process exporter (SQLite), as a process of its own.

``python session_app.py STORE_URL MODE``

- ``hang``: opens a session, records 2 turns, flushes, prints ``ready`` and sleeps inside the session (the test
  kills it with SIGKILL there).
- ``spans N``: N spans in sessions of 10 (a session span, its start marker, 8 turns), then exits normally
  (``STORE_URL`` is then an OTLP/HTTP endpoint: the spans go to a receiver through the OTLP exporter).
"""

from __future__ import annotations

import sys
import time

import galtea_otel


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    galtea_otel.record_usage(input_tokens=3, output_tokens=2)
    return prompt[::-1]


def hang(store_url: str) -> None:
    galtea_otel.configure(store_url)
    with galtea_otel.session(custom_id="killed", version="1"):
        chat("first")
        chat("second")
        assert galtea_otel.flush(timeout_s=30)
        print("ready", flush=True)
        time.sleep(600)


def spans(endpoint: str, count: int) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    galtea_otel.configure(exporter=OTLPSpanExporter(endpoint=endpoint))
    assert count % 10 == 0
    for s in range(count // 10):
        with galtea_otel.session(custom_id=f"exit-{s:04d}", version="1"):
            for turn in range(8):
                chat(f"{s}.{turn}")
    print("done", flush=True)  # and exit: galtea-otel's atexit hook exports what is still queued


if __name__ == "__main__":
    if sys.argv[2] == "hang":
        hang(sys.argv[1])
    else:
        spans(sys.argv[1], int(sys.argv[3]))
