"""``serve --assemble deferred`` (galtea_otel.serve.inbox): a request is acknowledged once its rows are committed
to the inbox, and a second process assembles them. The records must be the ones inline assembly makes, for any
delivery; what was acknowledged must survive the receiver being killed; what the store refuses is kept, marked
and counted, never deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.decode.otlp_proto import decode_proto
from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.inbox import ATTEMPTS, Assembler, Inbox, InboxError, decode, encode, inbox_path
from galtea_otel.serve.options import Address, ConfigError, ServeOptions
from galtea_otel.serve.server import Receiver, start_in_thread
from galtea_otel.settings import PipelineSettings
from galtea_otel.store import open_store
from galtea_otel.translate.row import COLUMNS
from tests.reliability.receiver_proc import ServeProcess, command_exit
from tests.reliability.stored import drop_trigger, refuse_inserts, store_quiet_session
from tests.reliability.test_app_accounting import wait_for
from tests.reliability.test_crash_resend import post, records, rows, sessions

LOCAL = Address("127.0.0.1", 0)


@contextlib.contextmanager
def receiver(db: Path, assemble: str, **changes: Any) -> Iterator[Receiver]:
    settings: dict[str, Any] = {"sweep_interval": 3600.0, "shutdown_grace": 30.0, **changes}
    options = ServeOptions(store_url=f"sqlite:///{db}", http=LOCAL, grpc=LOCAL, assemble=assemble, **settings)
    with start_in_thread(options) as running:
        running.db = db  # type: ignore[attr-defined]
        yield running


def test_deferred_records_equal_inline_for_any_delivery_over_http_and_grpc(tmp_path: Path) -> None:
    """Ten 50-span sessions: in one request to an inline receiver; to a deferred one in reverse order, in 7
    requests alternating OTLP/HTTP and OTLP/gRPC (the real exporters), then all of it again (duplicates)."""
    spans = sessions(10, "deferred")
    with receiver(tmp_path / "inline.db", "inline") as inline, receiver(tmp_path / "deferred.db", "deferred") as late:
        post(inline, spans)
        assert late.assembler is not None and late.inbox is not None
        delivery = list(reversed(spans))
        assert late.http_address is not None and late.grpc_address is not None
        http = HttpExporter(endpoint=f"http://{late.http_address}/v1/traces", timeout=60)
        grpc = GrpcExporter(endpoint=str(late.grpc_address), insecure=True, timeout=60)
        for i in range(7):
            chunk = delivery[i * 72:(i + 1) * 72]
            assert (http if i % 2 else grpc).export(chunk) == SpanExportResult.SUCCESS
        assert late.wait_assembled(60)
        expected = records(inline)
        assert len(expected) == 10 and {s["turn_count"] for s, _ in expected.values()} == {24}
        assert records(late) == expected
        assert rows(late) == rows(inline)
        post(late, spans)  # every span again: duplicates change nothing
        assert late.wait_assembled(60)
        assert records(late) == expected and rows(late) == rows(inline)
        backlog = late.inbox.backlog()
        assert (backlog.entries, backlog.failed_entries) == (0, 0)
        http.shutdown()
        grpc.shutdown()


def test_a_rejected_span_is_still_answered_as_a_partial_success(tmp_path: Path) -> None:
    """Translation runs before the acknowledgement: a span with an invalid id is rejected in the answer (and
    counted), the others are stored once assembled."""
    import http.client

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    spans = sessions(1, "partial")
    request = encode_spans(spans)
    request.resource_spans[0].scope_spans[0].spans[0].span_id = b"\x00" * 8  # an invalid (all-zero) span id
    with receiver(tmp_path / "d.db", "deferred") as late:
        assert late.http_address is not None
        conn = http.client.HTTPConnection(late.http_address.host, late.http_address.port, timeout=60)
        conn.request("POST", "/v1/traces", body=request.SerializeToString(),
                     headers={"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        answer = ExportTraceServiceResponse.FromString(response.read())
        conn.close()
        assert response.status == 200 and answer.partial_success.rejected_spans == 1
        assert late.wait_assembled(60)
        assert len(rows(late)) == 49


_ASSEMBLER = re.compile(r"assembler process (\d+)")


def _assembler_pid(proc: ServeProcess) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = _ASSEMBLER.search(proc.log)
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no assembler in the log:\n{proc.log}")


def _assembled_one(proc: ServeProcess, db: Path) -> int:
    """Send a new receiver one open session (``open-00``, 50 spans), which starts its assembler; once that is
    assembled (in the store, and gone from the inbox), return the assembler's process id."""
    assert _post_body(proc.port, encode_spans(sessions(1, "open")).SerializeToString()) == 200
    pid = _assembler_pid(proc)
    inbox = Path(str(db) + ".inbox")
    wait_for(lambda: _count(db, "SELECT count(*) FROM spans") == 50
             and _count(inbox, "SELECT count(*) FROM inbox") == 0, "the open session assembled and the inbox empty")
    return pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _post_body(port: int, body: bytes) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
    status = conn.getresponse().status
    conn.close()
    return status


def _count(db: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_acknowledged_requests_survive_the_receiver_and_assembler_killed(tmp_path: Path) -> None:
    """The assembler is stopped (SIGSTOP), 4 requests are acknowledged, then both processes are killed (SIGKILL):
    nothing of them is in the store yet, all of it is in the inbox; the next receiver assembles it."""
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    spans = sessions(8, "killed")
    bodies = [encode_spans(spans[i * 100:(i + 1) * 100]).SerializeToString() for i in range(4)]
    proc = ServeProcess(url).start()  # the default on a SQLite file: deferred
    try:
        pid = _assembled_one(proc, db)
        os.kill(pid, signal.SIGSTOP)
        assert [_post_body(proc.port, body) for body in bodies] == [200] * 4
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    finally:
        proc.kill()
    inbox = Path(str(db) + ".inbox")
    assert _count(inbox, "SELECT coalesce(sum(spans), 0) FROM inbox") == 400
    assert _count(db, "SELECT count(*) FROM spans") == 50
    listed = command_exit(["--store", url, "sessions", "list"])
    assert listed.returncode == 0 and "open-00" in listed.stdout and "killed" not in listed.stdout
    assert "400 span(s) received by `serve --assemble deferred` are not assembled yet" in listed.stderr
    with ServeProcess(url, "--assemble", "deferred"):
        deadline = time.monotonic() + 60
        while _count(inbox, "SELECT count(*) FROM inbox") and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _count(inbox, "SELECT count(*) FROM inbox") == 0
    assert _count(db, "SELECT count(*) FROM spans") == 450
    store = open_store(url)
    try:
        listed = store.list_sessions(limit=100)
    finally:
        store.close()
    assert sorted(s.custom_id for s in listed) == [f"killed-{i:02d}" for i in range(8)] + ["open-00"]
    assert {s.turn_count for s in listed} == {24}


def test_the_assembler_empties_the_inbox_and_exits_when_the_receiver_dies(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    spans = sessions(2, "orphaned")
    proc = ServeProcess(f"sqlite:///{db}", "--assemble", "deferred").start()
    try:
        pid = _assembled_one(proc, db)
        os.kill(pid, signal.SIGSTOP)
        assert _post_body(proc.port, encode_spans(spans).SerializeToString()) == 200
        os.kill(proc.pid, signal.SIGKILL)  # its end of the assembler's stdin closes
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the assembler outlived its receiver"
    finally:
        proc.kill()
    assert _count(db, "SELECT count(*) FROM spans") == 150, proc.log
    assert _count(Path(str(db) + ".inbox"), "SELECT count(*) FROM inbox") == 0, proc.log


def test_the_assembler_is_restarted_when_it_dies(tmp_path: Path) -> None:
    spans = sessions(1, "restarted")
    with receiver(tmp_path / "d.db", "deferred") as late:
        assert late.assembler is not None
        late.assembler.wake()  # a fresh store: the assembler starts with the first request, or when woken
        first = late.assembler.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while late.assembler.pid == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late.assembler.pid != first and late.assembler.restarts == 1
        post(late, spans)
        assert late.wait_assembled(60)
        assert len(rows(late)) == 50


def test_the_assembler_starts_with_the_first_request_on_a_store_with_nothing_to_do(tmp_path: Path) -> None:
    """``galtea-otel serve`` on a new SQLite file defers (the default, ``auto``) but holds one process until it
    is sent something; then the assembler starts and the request is assembled. Started again on that store
    (its session open, but its idle close 30 minutes off), it waits for a request again; on a store holding a
    session past its idle close, it starts the assembler at once, which closes it."""
    db = tmp_path / "s.db"
    with ServeProcess(f"sqlite:///{db}") as proc:
        time.sleep(1.0)
        assert _ASSEMBLER.search(proc.log) is None and "the assembler starts with the first request" in proc.log
        assert _children(proc.pid) == []
        assert _post_body(proc.port, encode_spans(sessions(1, "lazy")).SerializeToString()) == 200
        pid = _assembler_pid(proc)
        assert _children(proc.pid) == [pid]
        deadline = time.monotonic() + 60
        while _count(db, "SELECT count(*) FROM spans") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _count(db, "SELECT count(*) FROM sessions WHERE custom_id = 'lazy-00'") == 1
    with ServeProcess(f"sqlite:///{db}") as again:
        time.sleep(1.0)
        assert _children(again.pid) == [] and re.search(r"or in 1[78]\d\d s \(a sweep is due\)", again.log)
    quiet = tmp_path / "q.db"
    store_quiet_session(f"sqlite:///{quiet}")
    with ServeProcess(f"sqlite:///{quiet}") as swept:
        assert _children(swept.pid) == [_assembler_pid(swept)]
        deadline = time.monotonic() + 60
        while _count(quiet, "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'") == 0 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _count(quiet, "SELECT count(*) FROM sessions WHERE status = 'COMPLETED'") == 1


def test_a_serve_process_at_rest_with_its_sessions_open_is_one_process(tmp_path: Path) -> None:
    """``galtea-otel serve --assembler-idle-exit 0.5``: after a request, its assembler assembles it and leaves
    although the session stays open (its idle close is 30 minutes off): at rest, the receiver alone."""
    db = tmp_path / "s.db"
    with ServeProcess(f"sqlite:///{db}", "--assembler-idle-exit", "0.5") as proc:
        pid = _assembled_one(proc, db)
        wait_for(lambda: _children(proc.pid) == [], "the assembler to leave")
        assert not _alive(pid) and "no sweep due for 1" in proc.log
        assert _count(db, "SELECT count(*) FROM sessions WHERE status = 'PENDING'") == 1


def test_the_assembler_leaves_while_sessions_wait_and_comes_back_for_their_idle_close(tmp_path: Path) -> None:
    """Its memory is given back: once the inbox is empty and no sweep is due soon (the session's idle close is
    2.5 s off, more than the 0.5 s it waits), the assembler process exits, not counted as a crash; the receiver
    starts one again when the idle close is due, which closes the session and leaves in turn; the next request
    starts another, and is assembled."""
    settings = PipelineSettings(idle_close_minutes=0.05)  # 3 s
    with receiver(tmp_path / "d.db", "deferred", sweep_interval=0.2, assembler_idle_exit=0.5,
                  settings=settings) as late:
        assert late.assembler is not None and late.assembler.pid is None  # a new store: nothing to do yet
        post(late, sessions(1, "first"))
        assert late.wait_assembled(60)
        first = late.assembler.pid
        assert first is not None
        wait_for(lambda: late.assembler is not None and late.assembler.pid is None, "the assembler to leave")
        assert not _alive(first) and (late.assembler.idle_exits, late.assembler.restarts) == (1, 0)
        assert {s["status"] for s, _ in records(late).values()} == {"PENDING"}  # it left before the close
        wait_for(lambda: {s["status"] for s, _ in records(late).values()} == {"COMPLETED"}, "the idle close")
        wait_for(lambda: late.assembler is not None and late.assembler.idle_exits == 2
                 and late.assembler.pid is None, "the assembler to leave again")
        assert late.assembler.restarts == 0
        post(late, sessions(1, "second"))
        assert late.wait_assembled(60)
        assert late.assembler.pid not in (None, first)
        assert sorted(records(late)) == ["first-00", "second-00"]
        assert len(rows(late)) in (101, 102)  # the 100 sent, and a marker row per idle close


def test_an_idle_assembler_stays_for_a_sweep_due_soon(tmp_path: Path) -> None:
    """The session's idle close (1.8 s off) comes before the assembler's 4 s of waiting are up: the same process
    closes it, then leaves, nothing being left to sweep."""
    settings = PipelineSettings(idle_close_minutes=0.03)
    with receiver(tmp_path / "d.db", "deferred", sweep_interval=0.2, assembler_idle_exit=4.0,
                  settings=settings) as late:
        assert late.assembler is not None
        post(late, sessions(1, "open"))
        assert late.wait_assembled(60)
        pid = late.assembler.pid
        assert pid is not None
        wait_for(lambda: {s["status"] for s, _ in records(late).values()} == {"COMPLETED"}, "the idle close")
        assert late.assembler.pid == pid and _alive(pid) and late.assembler.idle_exits == 0
        wait_for(lambda: late.assembler is not None and late.assembler.pid is None, "the assembler to leave")
        assert late.assembler.idle_exits == 1 and late.assembler.restarts == 0 and not _alive(pid)


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


def test_the_assembler_sweeps_after_the_inbox(tmp_path: Path) -> None:
    """The receiver's sweep runs in the assembler: a session with no end event is idle-closed there."""
    spans = sessions(1, "idle")
    settings = PipelineSettings(idle_close_minutes=0.001)
    with receiver(tmp_path / "d.db", "deferred", sweep_interval=0.2, settings=settings) as late:
        post(late, spans)
        assert late.wait_assembled(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = {s["status"] for s, _ in records(late).values()}
            if status == {"COMPLETED"}:
                break
            time.sleep(0.1)
        assert status == {"COMPLETED"}


def test_a_full_inbox_answers_503_until_it_is_assembled(tmp_path: Path) -> None:
    """Backpressure: past ``inbox_max_spans`` spans waiting (the assembler stopped), requests get 503 with
    Retry-After and nothing of them is stored; once the assembler runs again they are accepted."""
    import http.client

    spans = sessions(3, "full")
    bodies = [encode_spans(spans[i * 50:(i + 1) * 50]).SerializeToString() for i in range(3)]
    with receiver(tmp_path / "d.db", "deferred", inbox_max_spans=40) as late:
        assert late.assembler is not None
        late.assembler.wake()
        assert late.assembler.pid is not None and late.http_address is not None
        os.kill(late.assembler.pid, signal.SIGSTOP)
        try:
            def send(body: bytes) -> tuple[int, str | None]:
                assert late.http_address is not None
                conn = http.client.HTTPConnection(late.http_address.host, late.http_address.port, timeout=60)
                conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                conn.close()
                return response.status, response.getheader("Retry-After")

            assert send(bodies[0])[0] == 200  # 50 spans waiting now: over the limit
            time.sleep(0.6)  # the receiver reads the inbox's backlog at most every 0.5 s
            status, retry_after = send(bodies[1])
            assert status == 503 and retry_after is not None
        finally:
            os.kill(late.assembler.pid, signal.SIGCONT)
        assert late.wait_assembled(60)
        time.sleep(0.6)
        assert send(bodies[1])[0] == 200 and send(bodies[2])[0] == 200
        assert late.wait_assembled(60)
        assert len(rows(late)) == 150
        assert sorted(records(late)) == ["full-00", "full-01", "full-02"]


# ------------------------------------------------------------------------------------------ the assembler itself


def _rows(pipeline: Pipeline, spans: list[Any]) -> list[Any]:
    """The spans as the receiver translates them (through OTLP protobuf, as they arrive)."""
    return pipeline.translate_spans(decode_proto(encode_spans(spans).SerializeToString()).spans)


def _staged(tmp_path: Path) -> tuple[Any, Pipeline, Inbox]:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    return store, Pipeline(store), Inbox(inbox_path(store))


def test_an_entry_the_store_refuses_is_retried_then_kept_marked_and_counted(tmp_path: Path) -> None:
    store, pipeline, inbox = _staged(tmp_path)
    refuse_inserts(store.path, "poison", "sessions", "NEW.custom_id = 'bad-00'", "poisoned session")
    for prefix in ("good", "bad", "fine"):
        inbox.put(_rows(pipeline, sessions(1, prefix)))
    slept: list[float] = []
    assembler = Assembler(pipeline, inbox, sleep=slept.append)
    assert assembler.step() == 3  # the batch fails; each alone: "bad" fails its first attempt
    assert sorted(s.custom_id for s in store.list_sessions(limit=10)) == ["fine-00", "good-00"]
    assert inbox.backlog().entries == 1
    for _ in range(ATTEMPTS - 1):
        assert assembler.step() == 1
    backlog = inbox.backlog()
    assert (backlog.entries, backlog.failed_entries, backlog.failed_spans) == (0, 1, 50)
    assert assembler.step() == 0  # marked failed: not taken again, and kept
    with contextlib.closing(sqlite3.connect(inbox.path)) as conn:
        failed = conn.execute("SELECT failed, attempts FROM inbox").fetchall()
    assert len(failed) == 1 and "poisoned session" in failed[0][0] and failed[0][1] == ATTEMPTS
    assert store.counters().get("inbox_failed_spans") == 50
    assert store.counters().get("inbox_failed_entries") == 1
    # a pause after each failed attempt but the last (from 0.5 s again: the good entries stored in between)
    assert slept == [0.5, 0.5]
    # the operator sees it, fixes the cause and gives it back
    shown = command_exit(["--store", f"sqlite:///{store.path}", "inbox", "--json"])
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert (listed["entries"], listed["failed_entries"], listed["failed_spans"]) == (0, 1, 50)
    assert "poisoned session" in listed["failed"][0]["error"]
    drop_trigger(store.path, "poison")
    retried = command_exit(["--store", f"sqlite:///{store.path}", "inbox", "--retry-failed"])
    assert retried.returncode == 0 and "1 failed entr(ies) given back" in retried.stdout
    assert assembler.step() == 1
    assert sorted(s.custom_id for s in store.list_sessions(limit=10)) == ["bad-00", "fine-00", "good-00"]
    assert inbox.backlog() == type(inbox.backlog())(0, 0, 0, 0)
    inbox.close()
    store.close()


def test_a_failing_store_is_waited_for_without_marking_anything(tmp_path: Path) -> None:
    """The store locked by another writer past its busy timeout (OperationalError) is the store failing, not the
    entries: the assembler backs off, doubling, and tries again, more times than an entry's attempts, marking
    nothing; once the lock is gone everything is stored."""
    from galtea_otel.store.sqlite import SQLiteStore

    path = tmp_path / "s.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout_ms=50)
    pipeline = Pipeline(store)
    inbox = Inbox(inbox_path(store))
    for prefix in ("one", "two"):
        inbox.put(_rows(pipeline, sessions(1, prefix)))
    slept: list[float] = []
    assembler = Assembler(pipeline, inbox, sleep=slept.append)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        for _ in range(ATTEMPTS + 3):
            assert assembler.step() == 2
        other.execute("ROLLBACK")
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert inbox.backlog() == type(inbox.backlog())(2, 100, 0, 0)
    with contextlib.closing(sqlite3.connect(inbox.path)) as conn:
        assert conn.execute("SELECT max(attempts) FROM inbox").fetchone()[0] == 0
    assert assembler.step() == 2
    assert sorted(s.custom_id for s in store.list_sessions(limit=10)) == ["one-00", "two-00"]
    assert inbox.backlog().entries == 0 and "inbox_failed_entries" not in store.counters()
    inbox.close()
    store.close()


def test_entries_read_back_by_column_name_and_refuse_globals(tmp_path: Path) -> None:
    store, pipeline, inbox = _staged(tmp_path)
    translated = _rows(pipeline, sessions(1, "named"))
    assert decode(encode(translated)) == translated
    # an entry of another release: its columns in another order, one it lacks, one this release lacks
    order = [c for c in reversed(COLUMNS) if c != "finish_reason"] + ["a_future_column"]
    values = [tuple([*(getattr(row, c) for c in order[:-1]), "x"]) for row in translated]
    older = decode(pickle.dumps((order, values), protocol=5))
    for row in translated:
        row.finish_reason = None
    assert older == translated
    with pytest.raises(InboxError):
        decode(pickle.dumps((COLUMNS, [os.getcwd]), protocol=5))
    with pytest.raises(InboxError):
        decode(b"not a pickle")
    with pytest.raises(InboxError, match="do not fit"):  # a release whose rows lack a required field
        decode(pickle.dumps((["span_id", "name"], [("ab", "x")]), protocol=5))
    with pytest.raises(InboxError, match="do not fit"):
        decode(pickle.dumps((["trace_id", "span_id"], [("ab",)]), protocol=5))
    with contextlib.closing(sqlite3.connect(inbox.path)) as conn:  # one unreadable entry among good ones
        conn.execute("INSERT INTO inbox (received_ns, spans, format, body) VALUES (1, 3, 1, ?)",
                     (pickle.dumps((COLUMNS, [os.getcwd]), protocol=5),))
        conn.commit()
        conn.execute("INSERT INTO inbox (received_ns, spans, format, body) VALUES (1, 1, 2, x'00')")  # a later format
        conn.commit()
    inbox.put(translated)
    assembler = Assembler(pipeline, inbox, sleep=lambda s: None)
    assert assembler.step() == 3
    assert [s.custom_id for s in store.list_sessions(limit=10)] == ["named-00"]
    backlog = inbox.backlog()
    assert (backlog.entries, backlog.failed_entries) == (0, 2)
    assert store.counters().get("inbox_failed_entries") == 2
    with contextlib.closing(sqlite3.connect(inbox.path)) as conn:
        errors = [r[0] for r in conn.execute("SELECT failed FROM inbox ORDER BY id")]
    assert "refused" in errors[0] and "format" in errors[1]
    inbox.close()
    with contextlib.closing(sqlite3.connect(inbox.path)) as conn:  # an inbox of a later release is refused
        conn.execute("PRAGMA user_version = 2")
    with pytest.raises(InboxError, match="newer"):
        Inbox(inbox.path)
    store.close()


def test_deferred_assembly_needs_a_sqlite_store() -> None:
    with pytest.raises(ConfigError, match="SQLite"):
        ServeOptions(store_url="postgresql://127.0.0.1/test", assemble="deferred").check()
    with pytest.raises(ConfigError, match="inline or deferred"):
        ServeOptions(assemble="later").check()
    done = command_exit(["serve", "--store", "postgresql://127.0.0.1/test", "--assemble", "deferred"])
    assert done.returncode == 2 and "needs a SQLite store" in done.stderr


def test_the_inbox_command_without_an_inbox(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    open_store(url).close()
    shown = command_exit(["--store", url, "inbox"])
    assert shown.returncode == 0 and "assembles inline" in shown.stdout
    as_json = command_exit(["--store", url, "inbox", "--json"])
    assert json.loads(as_json.stdout) == {"inbox": None, "entries": 0, "spans": 0, "oldest_received_ns": None,
                                          "failed_entries": 0, "failed_spans": 0, "retried": 0, "failed": []}
    assert not (tmp_path / "s.db.inbox").exists()
