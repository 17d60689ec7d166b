"""``galtea-otel ui`` in a real browser (Debian's Chromium through Playwright), against stores filled by the real
pipeline: ``galtea-otel demo``, an instrumented app in a subprocess, and an app exporting OTLP to ``galtea-otel
serve --ui``. Every test also checks that no request left loopback and that the console stayed free of errors.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galtea_otel.pipeline import read_session
from galtea_otel.store import open_store
from tests.examples.runner import clean_env, console_script, run_cli, sqlite_url
from tests.reliability.stored import store_quiet_session
from tests.ui.conftest import URL_LINE, RunningUI, Watched, screenshot, start_ui, stop_ui, wait_until


def _demo_sessions(store_url: str) -> dict[str, str]:
    store = open_store(store_url)
    try:
        return {s.custom_id: s.status for s in store.list_sessions(limit=100)}
    finally:
        store.close()


def _rows(page: Any) -> dict[str, str]:
    """Session id -> status shown, for every row of the sessions table."""
    found = {}
    for row in page.query_selector_all("tr[data-href]"):
        found[row.query_selector("td.id").inner_text().strip()] = row.query_selector("td .badge").inner_text()
    return found


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# --- the sessions page ------------------------------------------------------------------------------------------


def test_the_list_shows_the_demos_sessions_and_their_statuses(demo_ui: RunningUI, watched: Watched) -> None:
    page = watched.page
    response = page.goto(demo_ui.url)
    assert response is not None and response.status == 200
    expected = _demo_sessions(demo_ui.store_url)
    assert len(expected) == 4 and sorted(expected.values()) == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    assert _rows(page) == expected
    # Newest first, as the store lists them.
    shown = [r.query_selector("td.id").inner_text().strip() for r in page.query_selector_all("tr[data-href]")]
    assert shown == list(expected)
    outage = page.query_selector("tr[data-href*='outage']")
    assert "LLM backend unavailable" in outage.inner_text()  # the error column
    order = page.query_selector("tr[data-href*='order-status']").inner_text()
    assert "Hi! Where is my order?" in order and "production" in order
    assert "tc-return-window" in page.query_selector("tr[data-href*='eval-return-window']").inner_text()
    page.wait_for_selector("body.live")  # the live poll answered
    screenshot(page, "sessions")
    page.emulate_media(color_scheme="dark")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)", background  # the dark palette applies
    screenshot(page, "sessions-dark")
    watched.assert_clean()


def test_filters_live_in_the_url_and_match_sessions_list(demo_ui: RunningUI, watched: Watched,
                                                         demo_store: tuple[str, Path]) -> None:
    page = watched.page
    url, folder = demo_store

    def cli_ids(*flags: str) -> list[str]:
        proc = run_cli(["--store", url, "sessions", "list", "--json", *flags], folder)
        assert proc.returncode == 0, proc.stderr
        return [s["custom_id"] for s in json.loads(proc.stdout)]

    cases = [
        ("?status=FAILED", ["--status", "FAILED"]),
        ("?q=refund", ["-q", "refund"]),
        ("?metadata.channel=chat", ["--metadata", "channel=chat"]),
        ("?production=false", ["--test"]),
        ("?has_error=true", ["--has-error"]),
        ("?min_turns=2&max_cost=0.00004", ["--min-turns", "2", "--max-cost", "0.00004"]),
    ]
    for query, flags in cases:
        page.goto(demo_ui.url + query.lstrip("/"))
        shown = [r.query_selector("td.id").inner_text().strip() for r in page.query_selector_all("tr[data-href]")]
        expected = cli_ids(*flags)
        assert shown == expected, (query, shown, expected)
        assert expected, f"{query} keeps nothing in the demo: a useless case"
        assert len(expected) < 4 or query == "?min_turns=2&max_cost=0.00004"
    page.goto(demo_ui.url + "?status=FAILED")
    assert set(_rows(page).values()) == {"FAILED"}
    # The form writes the same URL: fill it, submit, land on the canonical filtered address.
    page.goto(demo_ui.url)
    page.fill("input[name=q]", "headphones")
    page.select_option("select[name=status]", "COMPLETED")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"\?status=COMPLETED&q=headphones$"))
    assert list(_rows(page)) == cli_ids("--status", "COMPLETED", "-q", "headphones")
    assert page.input_value("input[name=q]") == "headphones"
    watched.assert_clean()


def test_pages_follow_the_keyset_cursor(demo_ui: RunningUI, watched: Watched) -> None:
    page = watched.page
    page.goto(demo_ui.url + "?limit=3")
    first = list(_rows(page))
    assert len(first) == 3
    page.click("a[rel=next]")
    second = list(_rows(page))
    assert len(second) == 1 and not set(first) & set(second)
    assert first + second == list(_demo_sessions(demo_ui.store_url))
    assert page.query_selector("a[rel=next]") is None
    page.click("a[rel=first]")
    assert list(_rows(page)) == first
    watched.assert_clean()


# --- the session page -------------------------------------------------------------------------------------------


def test_a_failed_session_shows_its_error_and_every_turns_input_and_output(demo_ui: RunningUI,
                                                                             watched: Watched) -> None:
    page = watched.page
    page.goto(demo_ui.url)
    page.click("tr[data-href*='outage'] td.id a")
    page.wait_for_selector("main[data-view=session]")
    store = open_store(demo_ui.store_url)
    try:
        key = store.find_session_key(page.inner_text("h1.sid").split()[0])
        assert key is not None
        detail = read_session(store, key)
    finally:
        store.close()
    assert detail is not None and detail.status == "FAILED" and detail.error
    assert detail.error in page.inner_text("main .error.big")
    turns = page.query_selector_all("section.turn")
    assert len(turns) == len(detail.inference_results) == 2
    for section, turn in zip(turns, detail.inference_results, strict=True):
        text = section.inner_text()
        assert turn.input and turn.input in text
        if turn.output is not None:
            assert turn.output in text
        assert turn.status in text
        if turn.error:
            assert turn.error in text and "failed" in (section.get_attribute("class") or "")
    assert "fake-support-llm-1" in turns[0].inner_text()  # the footer's model
    assert page.query_selector_all(".waterfall .wf-row")  # the timeline
    assert "channel" in page.inner_text("aside.side")  # metadata
    screenshot(page, "session-failed")
    watched.assert_clean()


def test_a_session_page_shows_tools_timeline_and_copies_its_json(demo_ui: RunningUI, watched: Watched) -> None:
    page = watched.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(demo_ui.url)
    page.click("tr[data-href*='order-status'] td.id a")
    page.wait_for_selector("main[data-view=session]")
    assert len(page.query_selector_all("section.turn")) == 3
    tool = page.query_selector("details.step:has(.badge.t-tool)")
    assert tool is not None and "lookup_order" in tool.inner_text()
    tool.click()  # open the tool call: its input and output
    assert "A1001" in tool.inner_text()
    bars = page.query_selector_all(".waterfall rect")
    assert len(bars) >= 4  # three turns and the tool call
    page.click("button[data-copy]")
    # Not wait_for_function: a string predicate is evaluated by Playwright with eval, which the UI's
    # Content-Security-Policy (rightly) forbids; the locator check polls without it.
    from playwright.sync_api import expect

    expect(page.locator(".copied")).to_have_text("copied")
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    status, served = _get(page.url + ".json")
    assert status == 200 and copied == json.loads(served)
    assert copied["custom_id"].endswith("-order-status") and len(copied["inference_results"]) == 3
    screenshot(page, "session")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "session-dark")
    watched.assert_clean()


def test_keyboard_navigation(demo_ui: RunningUI, watched: Watched) -> None:
    page = watched.page
    page.goto(demo_ui.url)
    first = page.query_selector("tr[data-href]").get_attribute("data-href")
    second = page.query_selector_all("tr[data-href]")[1].get_attribute("data-href")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.query_selector("tr.selected").get_attribute("data-href") == first
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(second) + "$"))
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.id") == "turn-0"
    page.keyboard.press("u")
    page.wait_for_url(demo_ui.url)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "q"
    watched.assert_clean()


# --- live -------------------------------------------------------------------------------------------------------

APP = """
import sys
import galtea_otel

galtea_otel.configure()  # the store in GALTEA_OTEL_STORE
chat = galtea_otel.inference(model="live-model")(lambda prompt: "echo: " + prompt)
with galtea_otel.session(custom_id="live-1", version="1.0", metadata={"channel": "live"}):
    chat("first question")
    assert galtea_otel.flush()
    print("turn 1", flush=True)
    sys.stdin.readline()
    chat("second question")
assert galtea_otel.shutdown()
print("done", flush=True)
"""


@pytest.fixture
def empty_ui(tmp_path: Path) -> Iterator[RunningUI]:
    ui = start_ui(sqlite_url(tmp_path / "live.db"), tmp_path)  # the UI creates the empty store
    yield ui
    stop_ui(ui)


def test_a_session_recorded_while_the_page_is_open_appears_then_its_new_turn(empty_ui: RunningUI,
                                                                               watched: Watched,
                                                                               tmp_path: Path) -> None:
    page = watched.page
    page.goto(empty_ui.url)
    assert "No sessions yet" in page.inner_text("main")
    page.evaluate("window.__notReloaded = true")
    app = subprocess.Popen([sys.executable, "-c", APP], cwd=tmp_path, env=clean_env(empty_ui.store_url),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None and app.stdin is not None
        assert app.stdout.readline().strip() == "turn 1"
        row = page.wait_for_selector("tr[data-href*='live-1']", timeout=30_000)
        assert page.evaluate("window.__notReloaded") is True  # it came in without a reload
        assert row is not None and "PENDING" in row.inner_text() and "first question" in row.inner_text()
        row.query_selector("a").click()
        page.wait_for_selector("main[data-view=session]")
        assert len(page.query_selector_all("section.turn")) == 1
        page.evaluate("window.__notReloaded = true")
        app.stdin.write("go\n")
        app.stdin.flush()
        page.wait_for_selector("section#turn-1", timeout=30_000)
        page.wait_for_selector("h1.sid .badge.s-completed", timeout=30_000)
        assert page.evaluate("window.__notReloaded") is True
        assert "echo: second question" in page.inner_text("#turn-1")
        assert app.stdout.readline().strip() == "done"
    finally:
        if app.poll() is None:
            app.kill()
        app.communicate(timeout=30)
    watched.assert_clean()


# --- bad requests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status", "words"), [
    ("sessions/no-such-session/1.0", 404, "no session 'no-such-session'"),
    ("sessions/only-an-id", 404, "/sessions/<custom id>/<version>"),
    ("no/such/page", 404, "There is no page"),
    ("?status=SLEEPING", 400, "unknown status 'SLEEPING'"),
    ("?min_cost=cheap", 400, "min_cost must be a number"),
    ("?since=yesterday-ish", 400, "since must be an ISO 8601 time"),
    ("?after=not-a-cursor", 400, "not a page cursor"),
    ("?limit=0", 400, "limit must be a whole number"),
    ("?colour=blue", 400, "unknown filter 'colour'"),
    ("?metadata.a%22b=1", 400, "not a metadata key"),
])
def test_a_bad_request_gets_a_clear_page_and_status(demo_ui: RunningUI, watched: Watched, path: str, status: int,
                                                   words: str) -> None:
    page = watched.page
    response = page.goto(demo_ui.url + path)
    assert response is not None and response.status == status
    text = page.inner_text("main")
    assert words.lower() in text.lower(), text
    assert "Traceback" not in page.content()
    page.click("text=all sessions")
    page.wait_for_url(demo_ui.url)
    # The browser logs a failed page load (4xx) as a console error: that is the status, not a script error.
    watched.errors = [e for e in watched.errors if "Failed to load resource" not in e]
    watched.assert_clean()


def test_only_get_is_served(demo_ui: RunningUI) -> None:
    request = urllib.request.Request(demo_ui.url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 405


def test_a_foreign_host_header_is_refused_without_a_token(demo_ui: RunningUI) -> None:
    status, body = _get(demo_ui.url, {"Host": "attacker.example:7007"})  # DNS rebinding
    assert status == 403 and "only requests addressed to" in body
    assert _get(demo_ui.url, {"Host": "localhost"})[0] == 200


# --- the token rule ---------------------------------------------------------------------------------------------


def test_a_public_address_is_refused_without_a_token(demo_store: tuple[str, Path]) -> None:
    url, folder = demo_store
    proc = run_cli(["--store", url, "ui", "--host", "0.0.0.0", "--port", "0"], folder)
    assert proc.returncode == 2
    assert "refusing to serve the UI on the non-loopback address 0.0.0.0 without a token" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(["--store", url, "serve", "--grpc", "off", "--ui", "--ui-host", "0.0.0.0"], folder)
    assert proc.returncode == 2 and "refusing to serve the UI" in proc.stderr


def test_a_token_guards_every_request(demo_store: tuple[str, Path], watched: Watched, tmp_path: Path,
                                      browser: Any) -> None:
    url, folder = demo_store
    token_file = tmp_path / "ui.token"
    token_file.write_text("s3cret-token-for-the-ui\n")
    ui = start_ui(url, folder, "--token-file", str(token_file))
    try:
        page = watched.page
        response = page.goto(ui.url)
        assert response is not None and response.status == 401 and "guarded by a token" in page.inner_text("main")
        assert page.query_selector("tr[data-href]") is None
        assert _get(ui.url + "static/app.js")[0] == 401  # even the assets
        response = page.goto(ui.url + "?status=FAILED&token=s3cret-token-for-the-ui")
        assert response is not None and response.status == 200
        assert page.url == ui.url + "?status=FAILED"  # the token left the address bar; a cookie holds it
        assert list(_rows(page).values()) == ["FAILED"]
        page.click("tr[data-href] td.id a")
        page.wait_for_selector("main[data-view=session]")
        page.wait_for_selector("body.live")  # the live poll is authorized too
        assert _get(ui.url, {"Authorization": "Bearer s3cret-token-for-the-ui"})[0] == 200
        assert _get(ui.url, {"Authorization": "Bearer wrong"})[0] == 401
        assert _get(ui.url + "?token=wrong")[0] == 401
        other = browser.new_context()
        try:
            assert other.new_page().goto(ui.url).status == 401  # no cookie, no entry
        finally:
            other.close()
        watched.errors = [e for e in watched.errors if "Failed to load resource" not in e]
        watched.assert_clean()
    finally:
        stop_ui(ui)


# --- serve --ui -------------------------------------------------------------------------------------------------

EXPORTING_APP = """
import sys
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
import galtea_otel

galtea_otel.configure(exporter=OTLPSpanExporter(endpoint=sys.argv[1]))
chat = galtea_otel.inference(model="remote-model")(lambda prompt: "remote: " + prompt)
with galtea_otel.session(custom_id="via-receiver", version="2.0"):
    chat("hello receiver")
assert galtea_otel.shutdown()
"""


@pytest.mark.parametrize("assemble", ["inline", "deferred"])
def test_serve_ui_shows_what_the_receiver_records(tmp_path: Path, watched: Watched, assemble: str) -> None:
    """Deferred assembly too: with the assembler stopped, the live page says spans wait in the inbox; once it
    runs again the session appears and the note goes."""
    import os
    import signal

    script = console_script()
    assert script is not None
    store_url = sqlite_url(tmp_path / "served.db")
    if assemble == "deferred":  # a session past its idle close: the assembler starts at once, not with the request
        store_quiet_session(store_url, "seed")
    proc = subprocess.Popen([script, "--store", store_url, "serve", "--http", "127.0.0.1:0", "--grpc", "off",
                             "--ui", "--ui-port", "0", "--assemble", assemble], cwd=tmp_path,
                            env=clean_env(None), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        ui_url = otlp = None
        assembler = 0
        while ui_url is None or otlp is None:
            line = proc.stderr.readline()
            assert line, "galtea-otel serve --ui exited before it was ready"
            if (found := URL_LINE.search(line)) is not None:
                ui_url = found[1]
            if (ready := re.search(r"OTLP/HTTP on (http://\S+/v1/traces)", line)) is not None:
                otlp = ready[1]
            if (child := re.search(r"assembler process (\d+)", line)) is not None:
                assembler = int(child[1])
        assert (assembler != 0) == (assemble == "deferred")
        page = watched.page
        page.goto(ui_url)
        assert ("No sessions yet" in page.inner_text("main")) == (not assembler)
        if assembler:
            os.kill(assembler, signal.SIGSTOP)
        app = subprocess.run([sys.executable, "-c", EXPORTING_APP, otlp], cwd=tmp_path, env=clean_env(None),
                             capture_output=True, text=True, timeout=120)
        assert app.returncode == 0, app.stderr
        if assembler:
            note = page.wait_for_selector("#inbox-note", timeout=30_000)
            assert note is not None and "are not assembled into sessions yet" in note.inner_text()
            assert page.query_selector("tr[data-href*='via-receiver']") is None
            os.kill(assembler, signal.SIGCONT)
        row = page.wait_for_selector("tr[data-href*='via-receiver']", timeout=30_000)
        assert row is not None and "hello receiver" in row.inner_text()
        wait_until(lambda: "remote: hello receiver" in _get(ui_url + "api/sessions")[1], what="the API listing")
        assert page.query_selector("#inbox-note") is None
        watched.assert_clean()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
