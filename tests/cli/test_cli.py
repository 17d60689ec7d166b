"""The ``galtea-otel`` CLI against a real SQLite store filled by the examples.

In-process through click's ``CliRunner`` for most of it; through the installed console script in a subprocess
where the process boundary matters (exit codes, stderr, the demo, the import of ``serve``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from galtea_otel.cli.main import main
from galtea_otel.cli.render import Renderer, clip
from tests.examples.runner import clean_env, console_script, run_cli, run_example, sqlite_url
from tests.needs import unavailable

# The JSON fields documented in the README.
SESSION_FIELDS = {
    "custom_id", "version", "test_case_id", "is_production", "context", "metadata", "status", "error",
    "started_at", "ended_at", "turn_count", "input_tokens", "output_tokens", "total_tokens", "cost",
    "latency_ms", "user_id", "cache_read_input_tokens", "model", "first_input", "last_output", "duration_ms",
    "project",  # issue 12 (an addition)
}
TURN_FIELDS = {
    "id", "trace_id", "index", "input", "output", "model", "status", "error", "started_at", "ended_at",
    "latency_ms", "input_tokens", "output_tokens", "cache_read_input_tokens", "total_tokens", "cost",
    "abandoned", "messages", "finish_reason", "metadata", "spans",
    "cost_source", "price_version", "evaluations",  # issue 11
}
SPAN_FIELDS = {
    "id", "trace_id", "parent_id", "name", "type", "input", "output", "status", "error", "started_at",
    "ended_at", "latency_ms", "metadata", "children",
}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding the sessions of the quickstart, failing, streaming and simulated examples."""
    folder = tmp_path_factory.mktemp("cli")
    url = sqlite_url(folder / "records.db")
    for name in ("quickstart.py", "failing_session.py", "streaming.py", "simulated_conversation.py"):
        run_example(name, url, folder)
    # A conversation still running: flushed, then the process dies without ending the session.
    running = (
        "import os, galtea_otel\n"
        "galtea_otel.configure()\n"
        "chat = galtea_otel.inference(model='m')(lambda prompt: 'hi ' + prompt)\n"
        "with galtea_otel.session(custom_id='still-running', version='0.1'):\n"
        "    chat('there')\n"
        "    assert galtea_otel.flush()\n"
        "    os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", running], cwd=folder, env=clean_env(url), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return url


def cli(*args: str, store: str | None = None) -> Result:
    full = (["--store", store] if store else []) + list(args)
    return CliRunner().invoke(main, full, catch_exceptions=False)


def demo_ids(store: str) -> dict[str, str]:
    listed = json.loads(cli("sessions", "list", "--json", store=store).output)
    ids = [s["custom_id"] for s in listed if s["custom_id"].startswith("demo-")]
    return {custom_id.split("-", 2)[2]: custom_id for custom_id in ids}


# --- sessions list ------------------------------------------------------------------------------------------


def test_list_table(filled: str) -> None:
    result = cli("sessions", "list", store=filled)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["CUSTOM_ID", "VERSION", "STATUS", "TURNS"]
    assert len(lines) == 1 + 8
    failing = next(line for line in lines if line.startswith("failing-session-1"))
    assert failing.split()[:4] == ["failing-session-1", "1.0.0", "FAILED", "2"]
    assert "PaymentServiceDown: cannot refund" in failing and failing.endswith("…")  # long error cut
    status_column = lines[0].index("STATUS")
    statuses = [line[status_column:].split()[0] for line in lines[1:]]  # aligned
    assert sorted(set(statuses)) == ["COMPLETED", "FAILED", "PENDING"]
    assert "\x1b[" not in result.output  # no colors when stdout is not a terminal


def test_list_json_is_the_documented_session_array(filled: str) -> None:
    result = cli("sessions", "list", "--json", store=filled)
    assert result.exit_code == 0
    sessions = json.loads(result.output)
    assert isinstance(sessions, list) and len(sessions) == 8
    for s in sessions:
        assert set(s) == SESSION_FIELDS
    started = [s["started_at"] for s in sessions]
    assert started == sorted(started, reverse=True)  # newest first
    quick = next(s for s in sessions if s["custom_id"] == "quickstart-1")
    assert quick["status"] == "COMPLETED" and quick["turn_count"] == 2 and quick["is_production"] is True
    evaluation = next(s for s in sessions if s["custom_id"].endswith("eval-return-window"))
    assert evaluation["is_production"] is False and evaluation["test_case_id"] == "tc-return-window"


def test_list_filters(filled: str) -> None:
    failed = json.loads(cli("sessions", "list", "--status", "failed", "--json", store=filled).output)
    assert sorted(s["custom_id"].split("-")[-1] for s in failed) == ["1", "outage"]
    completed = json.loads(cli("sessions", "list", "--status", "COMPLETED", "--json", store=filled).output)
    assert len(completed) == 5 and {s["status"] for s in completed} == {"COMPLETED"}
    demo = json.loads(cli("sessions", "list", "--version", "demo-1.0.0", "--json", store=filled).output)
    assert len(demo) == 4 and {s["version"] for s in demo} == {"demo-1.0.0"}
    limited = json.loads(cli("sessions", "list", "--limit", "2", "--json", store=filled).output)
    assert len(limited) == 2
    pending = json.loads(cli("sessions", "list", "--status", "pending", "--json", store=filled).output)
    assert [(s["custom_id"], s["turn_count"], s["ended_at"]) for s in pending] == [("still-running", 1, None)]
    none = cli("sessions", "list", "--version", "9.9.9", store=filled)
    assert none.exit_code == 0 and "No sessions matching" in none.output


@pytest.mark.parametrize("args", [["--status", "DONE"], ["--limit", "0"], ["--limit", "x"]])
def test_list_rejects_bad_options(filled: str, args: list[str]) -> None:
    result = CliRunner().invoke(main, ["--store", filled, "sessions", "list", *args])
    assert result.exit_code == 2
    assert "Invalid value" in result.output


# --- sessions show ------------------------------------------------------------------------------------------


def test_show_failing_session(filled: str) -> None:
    result = cli("sessions", "show", "failing-session-1", store=filled)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Session failing-session-1  (version 1.0.0)" in out
    assert "status    FAILED" in out or "status   FAILED" in out
    assert "error    PaymentServiceDown: cannot refund A1001: payments API returned 503" in out
    assert "Conversation (2 turns)" in out
    assert "-- FAILED" in out and "error  PaymentServiceDown: payments API returned 503" in out
    assert "Spans outside any turn" in out and "- TOOL issue_refund" in out


def test_show_turns_and_span_tree(filled: str) -> None:
    order = demo_ids(filled)["order-status"]
    out = cli("sessions", "show", order, store=filled).output
    lines = out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("  [")]
    assert [lines[i][2:5] for i in starts] == ["[0]", "[1]", "[2]"]
    turn1 = "\n".join(lines[starts[1]:starts[2]])
    assert "GENERATED" in turn1 and "model fake-support-llm-1" in turn1 and "latency " in turn1
    # the transcript: the user's message, the tool call with its arguments and result, the reply
    assert "      user       Sure, it's A1001." in turn1
    assert '      tool       lookup_order(A1001) -> {"status":"shipped"' in turn1
    assert "      assistant  Order A1001: shipped with DHL, arriving Thursday." in turn1
    assert "cache read" in turn1


def test_show_marks_abandoned_stream(filled: str) -> None:
    out = cli("sessions", "show", "streaming-1", store=filled).output
    assert "-- GENERATED (abandoned)  latency" in out
    assert "-- GENERATED  latency" in out


def test_show_json_has_each_turn(filled: str) -> None:
    order = demo_ids(filled)["order-status"]
    result = cli("sessions", "show", order, "--json", store=filled)
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert set(data) == SESSION_FIELDS | {"inference_results", "spans", "unpriced_turns", "evaluations"}
    assert data["status"] == "COMPLETED" and data["turn_count"] == 3
    turns = data["inference_results"]
    assert [t["index"] for t in turns] == [0, 1, 2]
    for t in turns:
        assert set(t) == TURN_FIELDS
        assert t["input"] and t["output"] and t["model"] == "fake-support-llm-1"
        assert t["latency_ms"] > 0 and t["input_tokens"] > 0 and t["output_tokens"] > 0
        assert t["total_tokens"] == t["input_tokens"] + t["output_tokens"]
    [tool] = turns[1]["spans"]
    assert set(tool) == SPAN_FIELDS
    assert (tool["type"], tool["name"], tool["input"]) == ("TOOL", "lookup_order", "A1001")


def test_show_running_session(filled: str) -> None:
    out = cli("sessions", "show", "still-running", store=filled).output
    assert "status   PENDING" in out
    assert "assistant  hi there" in out


def test_show_by_version(filled: str) -> None:
    assert cli("sessions", "show", "quickstart-1", "--version", "1.0.0", store=filled).exit_code == 0
    result = CliRunner().invoke(main, ["--store", filled, "sessions", "show", "quickstart-1",
                                       "--version", "2"])
    assert result.exit_code == 1
    assert "no session 'quickstart-1' with version '2'" in result.output


def test_show_unknown_session(filled: str) -> None:
    result = CliRunner().invoke(main, ["--store", filled, "sessions", "show", "nope"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no session 'nope'")
    assert "Traceback" not in result.output


# --- store errors -------------------------------------------------------------------------------------------


def test_missing_store_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    result = CliRunner().invoke(main, ["--store", sqlite_url(path), "sessions", "list"])
    assert result.exit_code == 1
    assert "no store at" in result.output
    assert not path.exists()


def test_corrupt_store(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database\n" * 200)
    result = CliRunner().invoke(main, ["--store", sqlite_url(path), "sessions", "list"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "corrupt" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    result = CliRunner().invoke(main, ["--store", str(path), "sessions", "show", "x"])
    assert result.exit_code == 1
    assert "database of something else" in result.output


def test_unknown_store_scheme() -> None:
    result = CliRunner().invoke(main, ["--store", "mysql://localhost/db", "sessions", "list"])
    assert result.exit_code == 1
    assert "unknown store URL scheme 'mysql'" in result.output


def test_store_from_environment(filled: str) -> None:
    result = CliRunner().invoke(main, ["sessions", "list", "--json"], env={"GALTEA_OTEL_STORE": filled})
    assert result.exit_code == 0
    assert len(json.loads(result.output)) == 8


# --- test cases ---------------------------------------------------------------------------------------------


def test_test_cases_load_and_list(tmp_path: Path) -> None:
    store = sqlite_url(tmp_path / "cases.db")
    as_json = tmp_path / "cases.json"
    as_json.write_text(json.dumps([
        {"id": "tc-1", "input": "How long is the warranty?", "expected_output": "Two years.",
         "context": "EU customer", "metadata": {"suite": "warranty"}},
        {"id": "tc-2", "input": "Hi"},
    ]))
    as_jsonl = tmp_path / "more.jsonl"
    as_jsonl.write_text('{"id": "tc-3", "context": "x"}\n\n{"id": "tc-1", "input": "replaced"}\n')

    loaded = cli("test-cases", "load", str(as_json), store=store)
    assert loaded.exit_code == 0 and "Loaded 2 test cases" in loaded.output
    assert cli("test-cases", "load", str(as_jsonl), store=store).exit_code == 0

    cases = json.loads(cli("test-cases", "list", "--json", store=store).output)
    assert [c["id"] for c in cases] == ["tc-1", "tc-2", "tc-3"]
    assert cases[0] == {"id": "tc-1", "input": "replaced", "expected_output": None, "context": None,
                        "metadata": {}}
    table = cli("test-cases", "list", store=store).output.splitlines()
    assert table[0].split() == ["ID", "INPUT", "EXPECTED", "OUTPUT", "CONTEXT"]
    assert table[2].startswith("tc-2") and "Hi" in table[2]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json", "[{", "not valid JSON"),
    ("bad.jsonl", '{"id": "a"}\n{oops\n', "bad.jsonl:2"),
    ("noid.json", '[{"input": "x"}]', "invalid test case"),
    ("empty.json", "[]", "no test cases"),
])
def test_test_cases_load_refuses_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    store = tmp_path / "cases.db"
    path = tmp_path / name
    path.write_text(content)
    result = CliRunner().invoke(main, ["--store", sqlite_url(store), "test-cases", "load", str(path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert not store.exists()  # nothing half-loaded


def test_test_cases_load_missing_file(tmp_path: Path) -> None:
    store = sqlite_url(tmp_path / "s.db")
    result = CliRunner().invoke(main, ["--store", store, "test-cases", "load", "nope.json"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


# --- rendering ----------------------------------------------------------------------------------------------


def test_clip() -> None:
    assert clip("short", 10) == "short"
    assert clip("a\nmulti  line\tvalue", None) == "a multi line value"
    assert clip("abcdefghij", 5) == "abcd…"
    assert clip(None, 5) == "-"


def test_colors_only_when_asked() -> None:
    rows: list[list[str | tuple[str, str | None]]] = [
        ["a", ("FAILED", "red")], ["bbbb", ("COMPLETED", "green")]]
    plain = Renderer(color=False).table(["NAME", "STATUS"], rows)
    assert plain == ["NAME  STATUS", "a     FAILED", "bbbb  COMPLETED"]
    colored = Renderer(color=True).table(["NAME", "STATUS"], rows)
    assert "\x1b[31m" in colored[1] and "FAILED" in colored[1]
    assert colored[2].startswith("bbbb  ")


# --- the real console script --------------------------------------------------------------------------------


@pytest.fixture
def script() -> str:
    found = console_script()
    if found is None:
        unavailable("the galtea-otel console script is not installed (pip install -e .)")
    return found


def test_script_show_json_and_errors(script: str, filled: str, tmp_path: Path) -> None:
    shown = run_cli(["sessions", "show", "failing-session-1", "--json"], tmp_path, filled)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["status"] == "FAILED" and "cannot refund A1001" in data["error"]
    assert [t["status"] for t in data["inference_results"]] == ["GENERATED", "FAILED"]

    missing = run_cli(["sessions", "show", "nope"], tmp_path, filled)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.startswith("error: no session 'nope'") and len(missing.stderr.splitlines()) == 1

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(os.urandom(8192))
    broken = run_cli(["--store", str(corrupt), "sessions", "list"], tmp_path)
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: ") and "Traceback" not in broken.stderr


def test_script_demo_into_default_store(script: str, tmp_path: Path) -> None:
    proc = run_cli(["demo"], tmp_path)  # no GALTEA_OTEL_STORE: ./galtea_sessions.db
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "galtea_sessions.db").exists()
    out = proc.stdout
    assert "$ galtea-otel sessions list" in out
    assert out.count("COMPLETED") >= 6  # three rows in the list, three session headers
    assert "ConnectionError: LLM backend unavailable" in out  # the failed session, with its error
    assert "Conversation (3 turns)" in out and "tool       lookup_order(A1001)" in out
    assert "kind     evaluation, test case tc-return-window" in out
    listed = run_cli(["sessions", "list", "--json"], tmp_path)
    assert len(json.loads(listed.stdout)) == 4
    again = run_cli(["demo"], tmp_path)
    assert again.returncode == 0
    assert len(json.loads(run_cli(["sessions", "list", "--json"], tmp_path).stdout)) == 8


def test_script_help_is_cheap_and_lists_serve(script: str, tmp_path: Path) -> None:
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0
    for name in ("sessions", "test-cases", "demo", "serve"):
        assert f"  {name}" in proc.stdout
    code = ("import sys; from galtea_otel.cli.main import main; "
            "sys.argv = ['galtea-otel', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = ('uvicorn', 'grpc', 'galtea_otel.serve.cli', 'galtea_otel.pipeline', 'sqlite3')\n"
            "print([m for m in heavy if m in sys.modules], file=sys.stderr)")
    checked = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(None),
                             capture_output=True, text=True, timeout=60)
    assert checked.stderr.strip().splitlines()[-1] == "[]"


def test_serve_without_its_dependencies(tmp_path: Path) -> None:
    """``serve`` with uvicorn and grpc unimportable: a pip install hint, not a traceback."""
    code = ("import sys\nfor m in ('uvicorn', 'grpc'):\n    sys.modules[m] = None\n"
            "from galtea_otel.cli.main import main\nsys.argv = ['galtea-otel', 'serve']\nmain()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(None),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "pip install 'galtea-otel[serve]'" in proc.stderr
    assert "Traceback" not in proc.stderr
