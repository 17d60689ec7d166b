"""``galtea-otel demo`` then ``galtea-otel sync`` (real subprocesses) against the Galtea stand-in: the demo arrives
exactly once through injected failures, refusals are listed by ``sync status``, and a sender killed with SIGKILL
mid-batch loses and duplicates nothing once run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from galtea_otel.store import open_store
from tests.fakes.galtea_api import FakeGaltea
from tests.sync.conftest import API_KEY, GALTEA_OTEL, PRODUCT, assert_delivered_exactly_once, run_demo_into

Fake = tuple[FakeGaltea, str]


def _env(url: str, store_url: str) -> dict[str, str]:
    return {**os.environ, "GALTEA_API_KEY": API_KEY, "GALTEA_API_URL": url, "GALTEA_PRODUCT_ID": PRODUCT,
            "GALTEA_OTEL_STORE": store_url}


def _sync(url: str, store_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GALTEA_OTEL, "sync", "--request-timeout", "0.5", *args], env=_env(url, store_url),
                          capture_output=True, text=True, timeout=timeout)


def test_demo_then_sync_delivers_everything_once_through_injected_failures(fake: Fake, tmp_path: Path) -> None:
    api, url = fake
    store_url = f"sqlite:///{tmp_path / 'sessions.db'}"
    run_demo_into(store_url)
    api.fail_every = 4  # every 4th write: 500
    api.fail("POST", "sessions", "status", status=429, retry_after="1", times=1)
    api.fail("POST", "inferenceResults", "hang", hang_s=1.0, times=2)
    api.fail("POST", "traces/batch", "drop", times=1)
    api.fail("PATCH", "sessions/", "drop_before", times=1)
    done = _sync(url, store_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 sent, 0 already there, 0 refused, 0 pending" in done.stdout
    assert "Syncing 4 session(s)" in done.stderr  # the progress bar (on stderr)
    store = open_store(store_url)
    assert_delivered_exactly_once(api, store)
    assert sorted(s["status"] for s in api.sessions.values()) == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]

    again = _sync(url, store_url, "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["sent"] == 0
    assert_delivered_exactly_once(api, store)
    status = subprocess.run([*GALTEA_OTEL, "sync", "status"], env=_env(url, store_url), capture_output=True,
                            text=True, timeout=60)
    assert status.stdout.startswith("0 pending, 0 parked (refused), 4 sessions on the platform")
    for output in (done.stdout, done.stderr, again.stdout, again.stderr, status.stdout, status.stderr):
        assert API_KEY not in output
    store.close()


def test_sync_status_lists_the_parked_sessions_with_the_platforms_error(fake: Fake, tmp_path: Path) -> None:
    api, url = fake
    store_url = f"sqlite:///{tmp_path / 'sessions.db'}"
    run_demo_into(store_url)
    api.fail("POST", "sessions", "status", status=422, message="testCaseId tc-return-window does not exist",
             times=1)
    done = _sync(url, store_url)
    assert done.returncode == 1
    assert "3 sent, 0 already there, 1 refused, 0 pending" in done.stdout
    assert "refused: " in done.stdout and "HTTP 422" in done.stdout
    status = subprocess.run([*GALTEA_OTEL, "sync", "status", "--json"], env=_env(url, store_url),
                            capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert (report["pending"], report["parked"], report["synced_sessions"]) == (0, 1, 3)
    [parked] = report["parked_sessions"]
    assert "testCaseId tc-return-window does not exist" in parked["error"]
    text = subprocess.run([*GALTEA_OTEL, "sync", "status"], env=_env(url, store_url), capture_output=True,
                          text=True, timeout=60).stdout
    assert "PARKED" in text and parked["custom_id"] in text and "--retry-parked" in text
    retried = _sync(url, store_url, "--retry-parked")
    assert retried.returncode == 0 and "1 sent" in retried.stdout
    assert_delivered_exactly_once(api, open_store(store_url))


def test_a_missing_key_is_a_one_line_error(fake: Fake, tmp_path: Path) -> None:
    _, url = fake
    store_url = f"sqlite:///{tmp_path / 'sessions.db'}"
    run_demo_into(store_url)
    env = {k: v for k, v in _env(url, store_url).items() if k != "GALTEA_API_KEY"}
    done = subprocess.run([*GALTEA_OTEL, "sync"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no Galtea API key: set GALTEA_API_KEY (or GALTEA_API_KEY_FILE)"
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    done = subprocess.run([*GALTEA_OTEL, "sync", "--api-key-file", str(key_file)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kill_after", [3, 9, 16, "hang"])
def test_kill_9_mid_batch_then_run_again_loses_and_duplicates_nothing(
    fake: Fake, tmp_path: Path, kill_after: int | str
) -> None:
    api, url = fake
    store_url = f"sqlite:///{tmp_path / 'sessions.db'}"
    run_demo_into(store_url)
    api.delay_s = 0.05  # a slow platform: the sender is mid-batch for a while
    if kill_after == "hang":  # killed while a turn's creation has committed on the platform, unanswered
        api.fail("POST", "inferenceResults", "hang", hang_s=30.0, times=1)
    sender = subprocess.Popen([*GALTEA_OTEL, "sync", "--request-timeout", "20", "--lease-seconds", "1"],
                              env=_env(url, store_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    target = 1_000 if kill_after == "hang" else int(kill_after)
    while time.monotonic() < deadline:
        with api.lock:
            hung = kill_after == "hang" and any(f.times == 0 for f in api.faults)
            if hung or len(api.requests) >= target:
                break
        time.sleep(0.005)
    if kill_after == "hang":
        time.sleep(0.2)  # the turn is created; its answer never comes
    os.kill(sender.pid, signal.SIGKILL)
    sender.communicate(timeout=30)
    assert sender.returncode == -signal.SIGKILL
    with api.lock:
        before = (len(api.sessions), len(api.turns), len(api.spans))
    assert before != (4, 8, 5), "killed too late: everything was already sent"

    api.delay_s = 0.0
    time.sleep(1.1)  # the killed sender's lease runs out
    done = _sync(url, store_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", 0 refused, 0 pending" in done.stdout
    assert_delivered_exactly_once(api, open_store(store_url))
