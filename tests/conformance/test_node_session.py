"""Issue 8: a non-Python app ends a session, and the Node.js OTLP exporter's chunked bodies are accepted.

``examples/node/end_session.mjs`` runs for real: Node, the OpenTelemetry JS SDK (``@opentelemetry/sdk-trace-node``)
and its OTLP/HTTP protobuf exporter, installed by the tests from ``node/package.json`` into the cache outside the
repository (tests/conformance/producers.py), exporting to ``galtea-otel serve`` running as its own process. The
export goes through a capture that keeps each request's headers and forwards the body framed as it came (chunked
stays chunked), so the receiver reads exactly what the exporter sent. Marked ``producers`` (it needs the npm
install): ``pytest -m producers tests/conformance``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from galtea_otel.pipeline import read_session
from galtea_otel.store import open_store
from tests.conformance import producers
from tests.fakes.otlp_capture import OtlpCapture
from tests.reliability.receiver_proc import ServeProcess

pytestmark = [pytest.mark.producers, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node" / "end_session.mjs"
VERSION = "1.0.0"  # the example's


def run_example(endpoint: str, *args: str) -> str:
    folder = producers.node_modules()  # built (or found in the cache) first
    script = folder / EXAMPLE.name
    shutil.copy(EXAMPLE, script)  # ESM resolves packages from the script's folder
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GALTEA_"))}
    env.update({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces", "NO_PROXY": "*"})
    proc = subprocess.run(["node", str(script), *args], env=env, cwd=folder, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"the example exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("fail", [False, True], ids=["completed", "failed"])
def test_a_node_app_ends_its_session(tmp_path: Path, fail: bool) -> None:
    store_url = f"sqlite:///{tmp_path / 'records.db'}"
    custom_id = "node-conv-failed" if fail else "node-conv-1"
    with ServeProcess(store_url) as serve, OtlpCapture(f"http://127.0.0.1:{serve.port}") as capture:
        out = run_example(capture.endpoint, custom_id, *(["--fail"] if fail else []))
        statuses, headers = capture.statuses, capture.headers
    assert f"session {custom_id} (version {VERSION}) ended" in out

    # The exporter sent chunked bodies, and the receiver took every one (200 only after the commit).
    assert headers and statuses == [200] * len(headers), (statuses, headers)
    for sent in headers:
        assert sent.get("transfer-encoding") == "chunked" and "content-length" not in sent, sent
        assert sent.get("content-type") == "application/x-protobuf", sent

    store = open_store(store_url)
    try:
        key = store.find_session_key(custom_id, VERSION)
        assert key is not None, [s.custom_id for s in store.list_sessions()]
        session = read_session(store, key)
    finally:
        store.close()
    assert session is not None
    if fail:
        assert (session.status, session.error) == ("FAILED", "the user gave up")
    else:
        assert (session.status, session.error) == ("COMPLETED", None)
    results = session.inference_results
    assert [r.input for r in results] == ["Hi! Where is my order?", "A1001, please."]
    assert [r.output for r in results] == ["Which order number?", "Order A1001 ships on Thursday."]
    assert [(r.status, r.model, r.input_tokens, r.output_tokens) for r in results] == [
        ("GENERATED", "echo-1", 5, 3), ("GENERATED", "echo-1", 2, 5)]
    assert len({r.trace_id for r in results}) == 2  # one trace per user message
