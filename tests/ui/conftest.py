"""Fixtures of the UI's end-to-end tests: Debian's Chromium driven by Playwright, the real ``galtea-otel ui``.

The browser is ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it), never a
``playwright install`` download. Every page records its requests (each is checked to stay on 127.0.0.1; any
other is aborted and fails the test) and its console messages and page errors (none may be an error).
``GALTEA_OTEL_SCREENSHOTS=DIR`` saves the screenshots the tests take (the README's come from there).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.examples.runner import clean_env, console_script, sqlite_url
from tests.needs import unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
URL_LINE = re.compile(r"galtea-otel UI on (http://\S+/)")


def _need(condition: bool, why: str) -> None:
    if not condition:
        unavailable(why)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _need(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install -e '.[test]')")
        raise
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page and what it did: every request's URL, console errors and uncaught page errors."""

    page: Any
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.blocked, f"requests left loopback: {self.blocked}"
        assert self.requests, "the page made no request at all"
        outside = [u for u in self.requests if urlsplit(u).scheme not in ("data", "about")
                   and urlsplit(u).hostname not in LOOPBACK]
        assert not outside, outside
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    """A fresh browser context and page (1440x900) whose requests and console are watched."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    seen = Watched(page)

    def route(route: Any) -> None:
        url = route.request.url
        seen.requests.append(url)
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).hostname not in LOOPBACK:
            seen.blocked.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", route)
    page.on("console", lambda m: seen.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(f"pageerror: {exc}"))
    yield seen
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot to ``$GALTEA_OTEL_SCREENSHOTS/name.png`` when that variable is set."""
    folder = os.environ.get("GALTEA_OTEL_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


@dataclass
class RunningUI:
    url: str
    store_url: str
    proc: subprocess.Popen[str]


def start_ui(store_url: str, cwd: Path, *extra: str) -> RunningUI:
    """``galtea-otel --store URL ui --port 0 ...`` in a subprocess (the installed console script); waits until
    it prints its address."""
    script = console_script()
    _need(script is not None, "the galtea-otel console script is not installed (pip install -e .)")
    assert script is not None
    proc = subprocess.Popen([script, "--store", store_url, "ui", "--port", "0", *extra], cwd=cwd,
                            env=clean_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = URL_LINE.search(line)
    if match is None:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"galtea-otel ui did not start: {line!r} {err}")
    return RunningUI(match[1], store_url, proc)


def stop_ui(ui: RunningUI) -> None:
    ui.proc.terminate()
    try:
        _, err = ui.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        ui.proc.kill()
        _, err = ui.proc.communicate()
    assert "Traceback" not in (err or ""), err


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A store filled by ``galtea-otel demo`` (four sessions, one FAILED)."""
    folder = tmp_path_factory.mktemp("ui-demo")
    url = sqlite_url(folder / "demo.db")
    script = console_script()
    _need(script is not None, "the galtea-otel console script is not installed (pip install -e .)")
    assert script is not None
    proc = subprocess.run([script, "--store", url, "demo"], cwd=folder, env=clean_env(None), capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "ui" in proc.stdout.strip().splitlines()[-1], proc.stdout[-500:]
    return url, folder


@pytest.fixture(scope="module")
def demo_ui(demo_store: tuple[str, Path]) -> Iterator[RunningUI]:
    url, folder = demo_store
    ui = start_ui(url, folder)
    yield ui
    stop_ui(ui)


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


PYTHON = sys.executable


# The store contract's fixtures (both stores; PostgreSQL in a schema of its own per test), for test_filters.
from tests.store.test_stores import make_store, maker, pg_schemas, store  # noqa: E402, F401
