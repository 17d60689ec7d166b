"""Annotating in the UI (issue 11, point 4): ``galtea-otel ui --annotate``, in Chromium, against ``galtea-otel demo``.

A person scores a turn and labels the session on the session page; each is stored as an evaluation with source
``human`` (the storage of ``galtea-otel annotate``), shown on the page at once and listed by
``galtea-otel sessions show --json``. Refused: without ``--annotate`` (no form, POST is 405), without the
page's CSRF token or from another origin (403), bad input (400, nothing stored), a public address without a token.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.examples.runner import run_cli
from tests.ui.conftest import RunningUI, Watched, screenshot, start_ui, stop_ui


@pytest.fixture(scope="module")
def annotate_ui(demo_store: tuple[str, Path]) -> Iterator[RunningUI]:
    url, folder = demo_store
    ui = start_ui(url, folder, "--annotate")
    yield ui
    stop_ui(ui)


def _show(store_url: str, custom_id: str, folder: Path) -> dict[str, Any]:
    proc = run_cli(["--store", store_url, "sessions", "show", custom_id, "--json"], folder)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _human(detail: dict[str, Any]) -> list[tuple[str | None, str, Any, Any]]:
    """(turn id or None, name, score, label) of every human evaluation of the session and of its turns."""
    found = [(None, e["name"], e["score"], e["label"]) for e in detail["evaluations"] if e["source"] == "human"]
    for turn in detail["inference_results"]:
        found += [(turn["id"], e["name"], e["score"], e["label"]) for e in turn["evaluations"]
                  if e["source"] == "human"]
    return found


def _post(url: str, form: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=urlencode(form).encode(), method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _session_url(ui: RunningUI, suffix: str) -> str:
    with urllib.request.urlopen(ui.url, timeout=30) as response:
        html = response.read().decode()
    href = re.search(rf'href="(/sessions/[^"]*{suffix}/[^"]+)"', html)
    assert href is not None, html[:2000]
    return ui.url.rstrip("/") + href[1]


def _csrf(page_url: str) -> str:
    with urllib.request.urlopen(page_url, timeout=30) as response:
        found = re.search(r'name="csrf" value="([^"]+)"', response.read().decode())
    assert found is not None
    return found[1]


def test_annotate_a_turn_and_the_session_in_the_browser(annotate_ui: RunningUI, demo_store: tuple[str, Path],
                                                       watched: Watched) -> None:
    url, folder = demo_store
    page = watched.page
    page.goto(annotate_ui.url)
    page.click("tr[data-href*='order-status'] td.id a")
    page.wait_for_selector("main[data-view=session] form.annotate")
    custom_id = page.inner_text("h1.sid").split()[0]
    before = _human(_show(url, custom_id, folder))

    # A score of the second turn, with a note.
    page.select_option("form.annotate select[name=turn]", "2")
    page.fill("form.annotate input[name=name]", "helpfulness")
    page.fill("form.annotate input[name=score]", "0.25")
    page.fill("form.annotate textarea[name=note]", "never gave the delivery date")
    page.fill("form.annotate input[name=by]", "reviewer-ana")
    with page.expect_navigation():
        page.click("form.annotate button[type=submit]")
    page.wait_for_selector("main[data-view=session]")
    turn = page.inner_text("section#turn-1 .evals")
    assert "helpfulness" in turn and "0.25" in turn and "never gave the delivery date" in turn
    assert "human" in turn and "reviewer-ana" in turn
    assert "helpfulness" not in page.inner_text("#evaluations")  # not on the session

    # A label of the whole session.
    page.select_option("form.annotate select[name=turn]", "")
    page.fill("form.annotate input[name=name]", "verdict")
    page.fill("form.annotate input[name=label]", "fail")
    with page.expect_navigation():
        page.click("form.annotate button[type=submit]")
    page.wait_for_selector("main[data-view=session]")
    session = page.inner_text("#evaluations")
    assert "verdict" in session and "fail" in session
    screenshot(page, "session-annotate")

    detail = _show(url, custom_id, folder)
    added = [h for h in _human(detail) if h not in before]
    second = detail["inference_results"][1]
    assert sorted(added, key=str) == sorted([(second["id"], "helpfulness", 0.25, None),
                                             (None, "verdict", None, "fail")], key=str)
    stored = next(e for e in second["evaluations"] if e["name"] == "helpfulness")
    assert stored["explanation"] == "never gave the delivery date" and stored["target"] == "turn"
    assert stored["evaluator"]["name"] == "reviewer-ana"
    watched.assert_clean()


def test_bad_input_gets_a_400_page_and_stores_nothing(annotate_ui: RunningUI, demo_store: tuple[str, Path],
                                                      watched: Watched) -> None:
    url, folder = demo_store
    page = watched.page
    page.goto(annotate_ui.url)
    page.click("tr[data-href*='outage'] td.id a")
    page.wait_for_selector("main[data-view=session] form.annotate")
    custom_id = page.inner_text("h1.sid").split()[0]
    before = _human(_show(url, custom_id, folder))
    page.fill("form.annotate input[name=name]", "helpfulness")
    page.fill("form.annotate input[name=score]", "0.5")
    page.fill("form.annotate input[name=label]", "pass")  # both: refused
    with page.expect_navigation() as navigation:
        page.click("form.annotate button[type=submit]")
    assert navigation.value is not None and navigation.value.status == 400
    assert "give exactly one of a score and a label" in page.inner_text("main")
    session_url = _session_url(annotate_ui, "outage")
    csrf = _csrf(session_url)
    for form, words in (({"name": "x", "score": "abc"}, "must be a number"),
                        ({"name": " ", "score": "1"}, "name must not be empty"),
                        ({"name": "x", "score": "nan"}, "finite number"),
                        ({"name": "x", "label": "ok", "turn": "9"}, "there is no turn 9"),
                        ({"name": "x", "label": "ok", "turn": "first"}, "must be a turn"),
                        ({"name": "x", "label": "ok", "turn": "0"}, "there is no turn 0")):
        status, body = _post(session_url + "/annotate", {**form, "csrf": csrf})
        assert status == 400 and words in body, (form, status, body[-500:])
        assert "Traceback" not in body
    status, body = _post(_session_url(annotate_ui, "outage").rsplit("/", 1)[0] + "/nope/annotate",
                         {"name": "x", "score": "1", "csrf": csrf})
    assert status == 404
    assert _human(_show(url, custom_id, folder)) == before
    watched.errors = [e for e in watched.errors if "Failed to load resource" not in e]  # the 400 itself
    watched.assert_clean()


def test_a_post_without_the_pages_token_or_from_another_origin_is_refused(annotate_ui: RunningUI,
                                                                          demo_store: tuple[str, Path]) -> None:
    url, folder = demo_store
    session_url = _session_url(annotate_ui, "order-status")
    custom_id = session_url.split("/sessions/")[1].split("/")[0]
    before = _human(_show(url, custom_id, folder))
    form = {"name": "sneaky", "score": "0"}
    status, body = _post(session_url + "/annotate", form)
    assert status == 403 and "CSRF token" in body
    status, body = _post(session_url + "/annotate", {**form, "csrf": "guessed"})
    assert status == 403
    status, body = _post(session_url + "/annotate", {**form, "csrf": _csrf(session_url)},
                         {"Origin": "http://attacker.example"})
    assert status == 403 and "own page" in body
    status, body = _post(session_url + "/annotate", {**form, "csrf": _csrf(session_url)},
                         {"Host": "attacker.example"})  # DNS rebinding
    assert status == 403
    assert _human(_show(url, custom_id, folder)) == before


def test_without_annotate_there_is_no_form_and_a_post_is_refused(demo_ui: RunningUI,
                                                                 demo_store: tuple[str, Path],
                                                                 watched: Watched) -> None:
    url, folder = demo_store
    page = watched.page
    page.goto(demo_ui.url)
    page.click("tr[data-href*='order-status'] td.id a")
    page.wait_for_selector("main[data-view=session]")
    assert page.query_selector("form.annotate") is None
    custom_id = page.inner_text("h1.sid").split()[0]
    before = _human(_show(url, custom_id, folder))
    status, body = _post(page.url + "/annotate", {"name": "x", "score": "1", "csrf": "anything"})
    assert status == 405 and "--annotate" in body
    assert _human(_show(url, custom_id, folder)) == before
    watched.assert_clean()


def test_annotate_on_a_public_address_still_needs_a_token(demo_store: tuple[str, Path]) -> None:
    url, folder = demo_store
    proc = run_cli(["--store", url, "ui", "--annotate", "--host", "0.0.0.0", "--port", "0"], folder)
    assert proc.returncode == 2 and "without a token" in proc.stderr
