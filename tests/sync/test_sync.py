"""The Galtea sync against the local stand-in of the platform (tests/fakes/galtea_api.py): every record arrives
exactly once, with its status, whatever the network does; refusals are parked and reported."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from galtea_otel.pipeline import Pipeline
from galtea_otel.store import Store, open_store
from galtea_otel.store.base import SCHEMA_VERSION
from galtea_otel.sync.client import AuthFailed
from galtea_otel.sync.config import GalteaSyncConfig, VersionMapping
from galtea_otel.sync.outbox import enqueue, open_outbox
from galtea_otel.sync.worker import SyncRunner, sync_once
from tests.fakes.galtea_api import FakeGaltea
from tests.pipeline.spans import collect, conversation, sdk_tracer
from tests.sync.conftest import API_KEY, DEMO_VERSION, PRODUCT, assert_delivered_exactly_once, sync_config

Fake = tuple[FakeGaltea, str]


def test_the_demo_arrives_exactly_once_with_its_statuses(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    summary = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert (summary.sent, summary.already_there, summary.refused, summary.pending) == (4, 0, 0, 0)
    assert_delivered_exactly_once(api, demo_store)
    statuses = sorted(s["status"] for s in api.sessions.values())
    assert statuses == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    failed = next(s for s in api.sessions.values() if s["status"] == "FAILED")
    assert failed["error"].startswith("ConnectionError: LLM backend unavailable")
    # Each request body was one the SDK's own models accept (the stand-in refuses anything else with a 400).
    assert all(status < 300 for _, _, status in api.requests)

    again = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert (again.sent, again.refused, again.pending) == (0, 0, 0)
    assert_delivered_exactly_once(api, demo_store)


def _forget_platform_ids(store: Store) -> None:
    """As if every answer of the platform had been lost: the store no longer knows what it holds."""
    if store.url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        conn.execute("DELETE FROM galtea_sync_turns")
        conn.execute("DELETE FROM galtea_sync_sessions")
        conn.commit()
        conn.close()
    else:
        with store._conn() as conn:  # type: ignore[attr-defined]
            conn.execute("DELETE FROM galtea_sync_turns")
            conn.execute("DELETE FROM galtea_sync_sessions")


def test_redelivery_without_remembered_ids_looks_up_and_creates_nothing(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    sync_once(demo_store, sync_config(url), timeout_s=30)
    posts = sum(1 for method, _, _ in api.requests if method == "POST")
    _forget_platform_ids(demo_store)
    summary = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert (summary.totals.sessions_found, summary.totals.turns_found, summary.totals.spans_found) == (4, 8, 5)
    assert (summary.totals.sessions_created, summary.totals.turns_created, summary.totals.spans_created) == (0, 0, 0)
    assert summary.totals.turns_updated == 0  # each adopted turn holds what the store has: nothing to update
    assert sum(1 for method, _, _ in api.requests if method == "POST") == posts
    assert_delivered_exactly_once(api, demo_store)


@pytest.mark.parametrize("faults", [
    [("POST", "sessions", "status", {"status": 500})],
    [("POST", "sessions", "hang", {})],  # created, but the answer comes after the client gave up
    [("POST", "sessions", "drop", {})],  # created, then the connection drops
    [("POST", "inferenceResults", "hang", {"times": 3})],
    [("POST", "inferenceResults", "drop", {"times": 2})],
    [("POST", "inferenceResults", "drop_before", {"times": 2})],
    [("POST", "traces/batch", "hang", {"times": 2})],
    [("POST", "traces/batch", "status", {"status": 502, "times": 2})],
    [("PATCH", "sessions/", "hang", {"times": 2})],
    [("GET", "sessions", "status", {"status": 503, "times": 4})],
    [("POST", "inferenceResults", "drop", {}), ("GET", "inferenceResults", "drop", {"times": 1})],
    [("POST", "traces/batch", "drop", {}), ("GET", "traces", "hang", {"times": 1})],
], ids=lambda faults: "+".join(f"{m}-{p}-{mode}" for m, p, mode, _ in faults))
def test_every_record_arrives_once_through_failures(
    fake: Fake, demo_store: Store, faults: list[tuple[str, str, str, dict[str, int]]]
) -> None:
    api, url = fake
    injected = [api.fail(method, path, mode, hang_s=1.0, **options) for method, path, mode, options in faults]
    summary = sync_once(demo_store, sync_config(url), timeout_s=60)
    assert [f.times for f in injected] == [0] * len(injected), "a fault was never hit"
    assert (summary.refused, summary.pending) == (0, 0), summary
    assert_delivered_exactly_once(api, demo_store)


def test_failures_on_every_third_write_still_deliver_exactly_once(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    api.fail_every = 3
    api.fail("POST", "inferenceResults", "hang", hang_s=1.0, times=2)
    api.fail("POST", "traces/batch", "drop", times=1)
    summary = sync_once(demo_store, sync_config(url), timeout_s=60)
    assert (summary.refused, summary.pending) == (0, 0), summary
    assert sum(1 for _, _, status in api.requests if status == 500) >= 3
    assert_delivered_exactly_once(api, demo_store)


def test_429_is_retried_after_its_retry_after(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    api.fail("POST", "sessions", "status", status=429, retry_after="1", times=1)
    summary = sync_once(demo_store, sync_config(url), timeout_s=60)
    assert (summary.refused, summary.pending) == (0, 0)
    refused_at = [i for i, r in enumerate(api.requests) if r[2] == 429]
    assert len(refused_at) == 1
    # The retry of the refused request came no sooner than the Retry-After (1 s) after the refusal, as the fake
    # platform saw them arrive: a lower bound (a loaded machine only widens the gap), not its own 0.05 s backoff.
    i = refused_at[0]
    retry = next(j for j in range(i + 1, len(api.requests)) if api.requests[j][:2] == api.requests[i][:2])
    assert api.arrived[retry] - api.arrived[i] >= 1.0
    assert_delivered_exactly_once(api, demo_store)


def test_a_long_retry_after_defers_the_session_in_the_outbox(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    api.fail("POST", "sessions", "status", status=429, retry_after="120", times=1)
    summary = sync_once(demo_store, sync_config(url), timeout_s=2)
    assert summary.pending == 4 and summary.sent == 0  # all wait: the platform asked for 2 minutes
    overview = open_outbox(demo_store).overview()
    assert overview.pending == 4


def test_a_refused_session_is_parked_with_the_platforms_error_and_does_not_block_the_others(
    fake: Fake, demo_store: Store
) -> None:
    api, url = fake
    api.fail("POST", "sessions", "status", status=400, message="metadata.channel: value not allowed", times=1)
    summary = sync_once(demo_store, sync_config(url), timeout_s=30)
    assert (summary.sent, summary.refused, summary.pending) == (3, 1, 0)
    assert "HTTP 400" in summary.refusals[0] and "metadata.channel: value not allowed" in summary.refusals[0]
    assert len(api.sessions) == 3
    overview = open_outbox(demo_store).overview()
    assert overview.parked == 1 and overview.pending == 0
    [parked] = overview.parked_items
    assert "metadata.channel: value not allowed" in (parked.error or "")

    # Parked stays parked on a plain re-run; --retry-parked sends it (the platform accepts it now).
    assert sync_once(demo_store, sync_config(url), timeout_s=30).sent == 0
    assert len(api.sessions) == 3
    summary = sync_once(demo_store, sync_config(url), timeout_s=30, retry_parked=True)
    assert (summary.sent, summary.refused) == (1, 0)
    assert_delivered_exactly_once(api, demo_store)
    assert open_outbox(demo_store).overview().parked == 0


def test_a_version_that_cannot_be_mapped_is_parked_with_a_clear_message(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    config = sync_config(url, versions=VersionMapping(product_id="prod_other"))
    summary = sync_once(demo_store, config, timeout_s=30)
    assert (summary.sent, summary.refused) == (0, 4)
    assert "no version named 'demo-1.0.0'" in summary.refusals[0]
    assert api.sessions == {}


def test_version_mappings(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    static = api.add_version("prod_x", "whatever")
    sync_once(demo_store, sync_config(url, versions=VersionMapping(version_ids={DEMO_VERSION: static})),
              timeout_s=30)
    assert {s["versionId"] for s in api.sessions.values()} == {static}


def test_versions_created_from_facts(fake: Fake, demo_store: Store) -> None:
    api, url = fake
    config = sync_config(url, versions=VersionMapping(product_id="prod_new", create_versions=True))
    summary = sync_once(demo_store, config, timeout_s=30)
    assert summary.sent == 4
    [created] = [v for v in api.versions.values() if v["productId"] == "prod_new"]
    assert created["facts"] == {"galtea_otel.version": DEMO_VERSION} and created["name"] == DEMO_VERSION
    assert {s["versionId"] for s in api.sessions.values()} == {created["id"]}


def test_a_wrong_api_key_stops_the_sync_and_parks_nothing(fake: Fake, demo_store: Store) -> None:
    _, url = fake
    config = GalteaSyncConfig(api_key="gsk_wrong", base_url=url, versions=VersionMapping(product_id=PRODUCT))
    with pytest.raises(AuthFailed, match="refused the API key"):
        sync_once(demo_store, config, timeout_s=5)
    overview = open_outbox(demo_store).overview()
    assert overview.parked == 0 and overview.pending == 4


def test_the_pipeline_enqueues_in_the_same_transaction_only_when_sync_is_on(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "conv-off", "1.0", 1)
        Pipeline(store).ingest(collect(exporter))
        assert open_outbox(store).overview().pending == 0
        exporter.clear()
        conversation(tracer, "conv-on", "1.0", 2)
        Pipeline(store, sync=True).ingest(collect(exporter))
    assert open_outbox(store).overview().pending == 1
    [item] = open_outbox(store).claim(time.time_ns(), 10, 10**9)
    assert item.key == ("conv-on", "1.0", "default")

    # A failure in the transaction leaves neither the records nor the outbox row.
    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        enqueue(tx.sql, [("conv-x", "1.0", "default")], time.time_ns())
        raise Boom
    assert open_outbox(store).overview().pending == 1
    store.close()


def test_a_session_changed_while_being_sent_is_sent_again(fake: Fake, tmp_path: Path) -> None:
    api, url = fake
    api.add_version(PRODUCT, "1.0")
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "conv-1", "1.0", 1)
        pipeline.ingest(collect(exporter))
    runner = SyncRunner(store, sync_config(url))
    [item] = open_outbox(store).claim(time.time_ns(), 10, 10**10)
    # A late turn arrives (the session reopens) while the claimed row is being sent.
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "conv-1", "1.0", 1)
        pipeline.ingest(collect(exporter))
    assert runner._one(item) is None
    assert open_outbox(store).overview().pending == 1  # not deleted: its seq moved
    runner.close()
    summary = sync_once(store, sync_config(url), timeout_s=30)
    assert summary.pending == 0
    assert_delivered_exactly_once(api, store)
    store.close()


def test_a_reopened_session_gets_its_late_turn_and_is_finished_again(fake: Fake, tmp_path: Path) -> None:
    api, url = fake
    api.add_version(PRODUCT, "1.0")
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    pipeline = Pipeline(store, sync=True)
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "conv-1", "1.0", 2)
        pipeline.ingest(collect(exporter))
    sync_once(store, sync_config(url), timeout_s=30)
    [remote] = api.session_by_custom_id("conv-1")
    assert remote["status"] == "COMPLETED" and len(api.turns_of(remote["id"])) == 2
    with sdk_tracer() as (tracer, exporter):
        conversation(tracer, "conv-1", "1.0", 1, fail=True)  # a second session span: FAILED this time
        pipeline.ingest(collect(exporter))
    summary = sync_once(store, sync_config(url), timeout_s=30)
    assert summary.sent == 1 and summary.totals.turns_created == 1
    assert_delivered_exactly_once(api, store)
    assert api.session_by_custom_id("conv-1")[0]["status"] == store.list_sessions()[0].status
    store.close()


def test_migration_from_schema_v1_keeps_the_records(tmp_path: Path, demo_template: Path) -> None:
    import shutil
    import sqlite3

    path = tmp_path / "v1.db"
    shutil.copy(demo_template, path)
    conn = sqlite3.connect(path)
    for table in ("galtea_outbox", "galtea_sync_sessions", "galtea_sync_turns"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE galtea_meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    assert len(store.list_sessions()) == 4
    assert open_outbox(store).overview().pending == 0
    assert open_outbox(store).backfill(time.time_ns()) == 4
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),)
    conn.close()
    store.close()


def test_migration_from_schema_v1_on_postgresql(pg_url: object) -> None:
    import psycopg

    from tests.sync.conftest import run_demo_into

    url = pg_url()  # type: ignore[operator]
    run_demo_into(url)
    store = open_store(url)
    conninfo = store._conninfo  # type: ignore[attr-defined]
    store.close()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in ("galtea_outbox", "galtea_sync_sessions", "galtea_sync_turns"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE galtea_meta SET value = '1' WHERE key = 'schema_version'")
    store = open_store(url)
    assert len(store.list_sessions()) == 4
    assert open_outbox(store).backfill(time.time_ns()) == 4
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM galtea_meta WHERE key = 'schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),)
    store.close()


def test_two_workers_never_claim_the_same_session(demo_store: Store) -> None:
    open_outbox(demo_store).backfill(time.time_ns())
    now = time.time_ns()
    first = open_outbox(demo_store).claim(now, 3, 10**10)
    second = open_outbox(demo_store).claim(now, 10, 10**10)
    assert len(first) == 3 and len(second) == 1
    assert not {i.key for i in first} & {i.key for i in second}
    # A lease that ran out (its worker was killed) is claimed again.
    assert len(open_outbox(demo_store).claim(now + 2 * 10**10, 10, 10**10)) == 4


def test_the_api_key_is_never_logged_nor_stored(
    fake: Fake, demo_store: Store, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    api, url = fake
    caplog.set_level(logging.DEBUG)
    api.fail("POST", "sessions", "status", status=400, message="bad", times=1)
    api.fail("POST", "inferenceResults", "hang", hang_s=1.0, times=1)
    config = sync_config(url)
    assert API_KEY not in repr(config)
    sync_once(demo_store, config, timeout_s=30)
    with pytest.raises(AuthFailed) as failure:
        sync_once(demo_store, GalteaSyncConfig(api_key=API_KEY + "x", base_url=url,
                                               versions=VersionMapping(product_id=PRODUCT)), retry_parked=True)
    assert API_KEY not in str(failure.value)
    assert caplog.records  # the sync did log (warnings, httpx requests)
    assert API_KEY not in caplog.text
    out = capsys.readouterr()
    assert API_KEY not in out.out + out.err
    if demo_store.url.startswith("sqlite"):
        demo_store.close()
        for file in Path(demo_store.path).parent.iterdir():  # type: ignore[attr-defined]
            assert API_KEY.encode() not in file.read_bytes(), file
    else:
        with demo_store._conn() as conn:  # type: ignore[attr-defined]
            for table in ("galtea_outbox", "galtea_sync_sessions", "galtea_sync_turns", "sessions", "spans"):
                dump = str(conn.execute(f"SELECT * FROM {table}").fetchall())
                assert API_KEY not in dump, table


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    from galtea_otel.sync.config import SyncConfigError

    config = GalteaSyncConfig.from_env(environ={"GALTEA_API_KEY": "k1", "GALTEA_API_URL": "http://h:1/"})
    assert (config.api_key, config.base_url) == ("k1", "http://h:1")
    key_file = tmp_path / "key"
    key_file.write_text("k2\n")
    config = GalteaSyncConfig.from_env(environ={"GALTEA_API_KEY": "k1", "GALTEA_API_KEY_FILE": str(key_file)})
    assert config.api_key == "k2" and config.base_url == "https://api.galtea.ai"
    with pytest.raises(SyncConfigError, match="no Galtea API key"):
        GalteaSyncConfig.from_env(environ={})
    with pytest.raises(SyncConfigError, match="cannot read"):
        GalteaSyncConfig.from_env(environ={"GALTEA_API_KEY_FILE": str(tmp_path / "missing")})
    maps = GalteaSyncConfig.from_env(environ={"GALTEA_API_KEY": "k", "GALTEA_VERSION_MAP": '{"1.0": "ver_1"}',
                                              "GALTEA_PRODUCT_ID": "p"})
    assert maps.versions == VersionMapping(version_ids={"1.0": "ver_1"}, product_id="p")
