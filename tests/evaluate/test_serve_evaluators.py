"""``galtea-otel serve --evaluators MODULE:ATTR``: a real receiver process evaluates the sessions that end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from galtea_otel.pipeline import read_session
from galtea_otel.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("assemble", ["inline", "deferred"])
def test_the_receiver_runs_its_evaluators_when_a_session_ends(tmp_path: Path, assemble: str) -> None:
    """Deferred assembly too: the session ends in the assembler process, the receiver's runner evaluates it."""
    url = f"sqlite:///{tmp_path / 'served.db'}"
    port = _free_port()
    command = [sys.executable, "-c", "from galtea_otel.cli.main import main; main()", "serve", "--store", url,
               "--http", f"127.0.0.1:{port}", "--grpc", "off",
               "--evaluators", "tests.evaluate.evals_module:EVALUATORS", "--assemble", assemble]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "receiver ready" in line:
                break
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")))
        tracer = provider.get_tracer("t")
        key = {"galtea.session.custom_id": "served-1", "galtea.session.version": "1"}
        with tracer.start_as_current_span("galtea.session", attributes={**key, "galtea.span.type": "SESSION"}):
            for n in range(2):
                with tracer.start_as_current_span("chat", attributes={
                        **key, "galtea.span.type": "GENERATION", "galtea.span.input": json.dumps(f"q{n}")}):
                    pass
        provider.shutdown()
        process.send_signal(signal.SIGTERM)  # stopping runs what is due
        process.stderr.read()
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    store = open_store(url)
    detail = read_session(store, ("served-1", "1"))
    store.close()
    assert detail is not None and detail.status == "COMPLETED"
    got = {(e.name, e.score, e.evaluator.version if e.evaluator else None) for e in detail.evaluations}
    assert got == {("turn_count", 2.0, "2"), ("failed_turn_rate", 0.0, "1")}
