"""The UI's import path loads neither the OpenTelemetry SDK nor pydantic (issue 10: it starts in under a second).

A fresh interpreter imports what ``galtea-otel ui`` imports (the console script's module, the UI server), opens
the store and makes the UI's app: no ``opentelemetry.sdk`` module and no ``pydantic`` may be loaded then. It
then runs the real ``ui`` command in a thread, waits for ``/healthz``, and reads the sessions page, a session
page and its JSON (which do make records, so pydantic loads): the SDK must still not be loaded. The
instrumentation path (``import galtea_otel`` then ``galtea_otel.session``) is checked to still load its API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.examples.runner import clean_env

ROOT = Path(__file__).resolve().parents[2]

_UI_PATH = r"""
import json, socket, sys, threading, time, urllib.request

def loaded():
    return {"sdk": sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")),
            "pydantic": sorted(m for m in sys.modules if m == "pydantic" or m.startswith("pydantic.")),
            "records": "galtea_otel.records" in sys.modules}

from galtea_otel.cli.main import main  # what the console script imports
import galtea_otel.ui.server
from galtea_otel.store import open_store

store = open_store(sys.argv[1])
galtea_otel.ui.server.UIApp(store)
at_start = loaded()

with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
threading.Thread(target=main, args=(["--store", sys.argv[1], "ui", "--port", str(port)],), daemon=True).start()
base = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
            break
    except OSError:
        time.sleep(0.05)
statuses = {}
for path in ["/", "/sessions/imp-1/v1", "/sessions/imp-1/v1.json"]:
    with urllib.request.urlopen(base + path, timeout=30) as answer:
        statuses[path] = [answer.status, answer.read().decode()]
print(json.dumps({"start": at_start, "served": loaded(), "statuses": statuses}))
"""


def _fill(url: str) -> None:
    """One session with one turn, written through the store's own primitives (no SDK in this process needed)."""
    from galtea_otel.store import open_store
    from galtea_otel.translate.row import KIND_LLM, SpanRow

    store = open_store(url)
    started = 1_780_000_000 * 10**9
    from galtea_otel.pipeline import Pipeline

    Pipeline(store).ingest_rows([SpanRow(
        trace_id="ab" * 16, span_id="cd" * 8, parent_span_id=None, name="chat", kind=KIND_LLM, start_ns=started,
        end_ns=started + 10**9, status=0, own_custom_id="imp-1", own_version="v1", custom_id="imp-1", version="v1",
        input="what is an import?", output="a module, loaded", model="m1", received_ns=started)])
    store.close()


def _run(code: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=clean_env(None), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_ui_path_imports_neither_the_opentelemetry_sdk_nor_pydantic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ui.db'}"
    _fill(url)
    report = json.loads(_run(_UI_PATH, url, cwd=tmp_path).strip().splitlines()[-1])
    assert report["start"] == {"sdk": [], "pydantic": [], "records": False}, report["start"]
    statuses = report["statuses"]
    assert {path: status for path, (status, _) in statuses.items()} == dict.fromkeys(statuses, 200)
    assert "imp-1" in statuses["/"][1] and "a module, loaded" in statuses["/sessions/imp-1/v1"][1]
    assert json.loads(statuses["/sessions/imp-1/v1.json"][1])["inference_results"][0]["input"] == "what is an import?"
    # Serving pages makes records (pydantic), never spans: the SDK stays out of the process.
    assert report["served"]["sdk"] == [], report["served"]
    assert report["served"]["records"] is True


def test_the_instrumentation_path_still_loads_its_api_on_first_use(tmp_path: Path) -> None:
    code = ("import sys, galtea_otel\n"
            "before = any(m.startswith('opentelemetry.sdk') for m in sys.modules)\n"
            "from galtea_otel import inference, session, configure\n"
            "import galtea_otel.instrument.session as module\n"
            "print(before, session is module.session, galtea_otel.session is session,"
            " any(m.startswith('opentelemetry.sdk') for m in sys.modules), callable(galtea_otel.stats),"
            " galtea_otel.__version__ == galtea_otel.config.VERSION, 'configure' in dir(galtea_otel))")
    assert _run(code, cwd=tmp_path).split() == ["False", "True", "True", "True", "True", "True", "True"]
