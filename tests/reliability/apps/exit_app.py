"""An application that exits while its store is slow (``python exit_app.py STORE_URL``): it exports one warm-up
session, prints ``warm``, waits for a line on stdin (the test then holds the store's write lock), records more
sessions and exits normally. galtea-otel's exit hook runs the bounded shutdown; after it, the last exit hook
prints one JSON line: the spans ended and galtea-otel's counters."""

from __future__ import annotations

import atexit
import json
import sys
import threading
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

import galtea_otel
from galtea_otel import config


class Ends(SpanProcessor):
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            self.count += 1


@galtea_otel.inference(model="fake-1")
def chat(prompt: str) -> str:
    return prompt[::-1]


def main(store_url: str) -> None:
    ends = Ends()
    # registered before configure(): exit hooks run last-in first-out, so this runs after galtea-otel's shutdown
    atexit.register(lambda: print(json.dumps({"ended": ends.count, "stats": galtea_otel.stats()}), flush=True))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(ends)
    galtea_otel.configure(store_url, tracer_provider=provider, schedule_delay_millis=20)
    config.EXIT_TIMEOUT_S = 0.5  # keep the test short: the bound of the exit-time shutdown
    with galtea_otel.session(custom_id="warm", version="1"):
        chat("warm")
    assert galtea_otel.flush(timeout_s=30)
    print("warm", flush=True)
    sys.stdin.readline()
    for s in range(15):
        with galtea_otel.session(custom_id=f"s{s}", version="1"):
            for t in range(8):
                chat(f"{s}.{t}")
    galtea_otel.flush(timeout_s=0.3)  # the export thread takes a batch: it waits on the store's lock


if __name__ == "__main__":
    main(sys.argv[1])
