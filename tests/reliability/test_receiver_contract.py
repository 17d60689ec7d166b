"""The OTLP receiver contract of RELIABILITY.md, items 6 to 12, where tests/serve does not already prove them
(the map of item -> test is in the README's "Guarantees" section).

Memory is measured in a receiver process of its own (``/proc/PID/status``), never in the test process.
"""

from __future__ import annotations

import gzip
import hmac
import http.client
import json
import logging
import os
import socket
import sqlite3
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.server import start_in_thread
from galtea_otel.store import open_store

from ..decode.samples import encode, json_request, json_span, llm_spans, proto_body
from .receiver_proc import ServeProcess, command_exit

SPANS = llm_spans(sessions=2, turns=1)
LOCAL = Address("127.0.0.1", 0)


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/traces", body, headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _spans_in(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT trace_id, span_id, parent_span_id, metadata FROM spans ORDER BY name").fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "contract.db"


# --- 6 --------------------------------------------------------------------------------------------------------


class _CorruptingSession(requests.Session):
    """Between a real exporter and the receiver: each body replaced by 1 KiB of random bytes; answers kept."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[int, str, bytes]] = []

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["data"] = os.urandom(1024)
        response = super().request(*args, **kwargs)
        self.answers.append((response.status_code, response.headers.get("content-type", ""), response.content))
        return response


def test_random_bytes_get_400_with_a_status_and_the_real_exporter_sends_once(db: Path) -> None:
    """RELIABILITY 6: 1 KiB of random bytes from the real OTLP/HTTP exporter: 400 with a google.rpc.Status body
    (INVALID_ARGUMENT, a message), exactly 1 request (no retry), nothing stored."""
    with ServeProcess(f"sqlite:///{db}") as receiver:
        session = _CorruptingSession()
        exporter = OTLPSpanExporter(endpoint=receiver.url, timeout=30, session=session)
        assert exporter.export(SPANS) is SpanExportResult.FAILURE
        exporter.shutdown()  # type: ignore[no-untyped-call]
    assert len(session.answers) == 1
    status, content_type, body = session.answers[0]
    assert (status, content_type) == (400, "application/x-protobuf")
    parsed = Status.FromString(body)
    assert parsed.code == 3 and "not an OTLP/protobuf" in parsed.message
    assert _spans_in(db) == []


# --- 7 --------------------------------------------------------------------------------------------------------


def _gzip_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\x00" * (1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(inflated >> 20)) + compressor.flush()


def test_limit_and_gzip_bomb_in_a_receiver_process(db: Path) -> None:
    """RELIABILITY 7: in a receiver process with the default 20 MiB limit, a body of limit + 1 bytes gets 413;
    a gzip bomb (1 MiB inflating to 1 GiB) gets 413 (RESOURCE_EXHAUSTED) after inflating at most the limit:
    the process's peak resident memory (VmHWM) rises by less than 100 MiB; and it keeps serving."""
    limit = 20 * 1024 * 1024
    bomb = _gzip_bomb(1 << 30)
    assert len(bomb) < 2 << 20
    with ServeProcess(f"sqlite:///{db}") as receiver:
        headers = {"Content-Type": "application/x-protobuf"}
        assert _post(receiver.port, proto_body(SPANS), headers)[0] == 200  # warm
        status, _, body = _post(receiver.port, b"\x00" * (limit + 1), headers)
        assert status == 413 and Status.FromString(body).code == 8
        baseline = receiver.status_kib("VmRSS")
        receiver.reset_peak()
        status, _, body = _post(receiver.port, bomb, {**headers, "Content-Encoding": "gzip"})
        peak = receiver.status_kib("VmHWM")
        assert status == 413
        assert Status.FromString(body).code == 8 and "after decompression" in Status.FromString(body).message
        assert peak - baseline < 100 * 1024, f"peak RSS rose by {(peak - baseline) // 1024} MiB"
        small = gzip.compress(proto_body(llm_spans(1, 1)))
        assert _post(receiver.port, small, {**headers, "Content-Encoding": "gzip"})[0] == 200
    assert len(_spans_in(db)) == len(SPANS) + len(llm_spans(1, 1))


# --- 9 --------------------------------------------------------------------------------------------------------


def test_otlp_json_edge_cases_through_the_receiver(db: Path) -> None:
    """RELIABILITY 9: OTLP/JSON over HTTP: upper, lower and mixed case hex ids, integer enums, int64 as strings,
    unknown fields at every level are accepted; a base64 trace id and a wrong-length span id are rejected and
    counted in partialSuccess.rejectedSpans (200, no retry), the others stored with lower-case ids."""
    unknown: dict[str, Any] = {"someFutureField": {"nested": [1, "x"]}, "droppedAttributesCount": 0}
    spans = [
        json_span(name="a-upper", **unknown),
        json_span(
            "5b8efff798038103d269b633813fc60c", "00000000000000a2", "eee19b7ec3c1b174", name="b-lower",
            kind=3, status={"code": 2, "message": "boom", "unknownStatusField": True},
            attributes=[
                {"key": "big", "value": {"intValue": "9007199254740993"}},
                {"key": "neg", "value": {"intValue": "-42"}},
                {"key": "flag", "value": {"boolValue": True}, "unknownKvField": 1},
            ],
        ),
        json_span("5B8Efff798038103d269B633813fc60C", "00000000000000A3", name="c-mixed", links=[], events=[]),
        json_span("W46/95gDgQPSabYzgT/GDA==", "00000000000000a4", name="d-base64"),
        json_span(span_id="00000000000000a", name="e-short"),
    ]
    doc = json_request(*spans)
    doc["unknownTopLevel"] = 1
    doc["resourceSpans"][0]["schemaUrl"] = "https://opentelemetry.io/schemas/1.21.0"
    doc["resourceSpans"][0]["scopeSpans"][0]["unknownScopeSpansField"] = "x"
    with ServeProcess(f"sqlite:///{db}") as receiver:
        status, headers, body = _post(receiver.port, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert (status, headers["content-type"]) == (200, "application/json")
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"  # int64 in OTLP/JSON: a string
    assert "traceId" in partial["errorMessage"] and "spanId" in partial["errorMessage"]
    stored = _spans_in(db)
    assert [(r[0], r[1], r[2]) for r in stored] == [
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", None),
        ("5b8efff798038103d269b633813fc60c", "00000000000000a2", "eee19b7ec3c1b174"),
        ("5b8efff798038103d269b633813fc60c", "00000000000000a3", None),
    ]
    assert json.loads(stored[1][3]) == {"big": 9007199254740993, "neg": -42, "flag": True}


# --- 11 -------------------------------------------------------------------------------------------------------


def test_token_required_on_http_and_grpc_and_never_logged_or_stored(db: Path, tmp_path: Path) -> None:
    """RELIABILITY 11: a receiver process with --token-file: a missing or wrong token gets 401 (HTTP) and
    UNAUTHENTICATED (gRPC) and stores nothing; the right one stores. The token is in none of the receiver's log
    (all of its stderr) nor any byte of the store's files (database, WAL, shared memory)."""
    token = "tok-" + os.urandom(16).hex()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    proto = {"Content-Type": "application/x-protobuf"}
    with ServeProcess(f"sqlite:///{db}", "--token-file", str(token_file), grpc=True) as receiver:
        for auth in (None, f"Bearer {token}x", f"Bearer {token[:-1]}", f"Basic {token}", token, "Bearer "):
            headers = {**proto, **({"Authorization": auth} if auth is not None else {})}
            status, answer_headers, _ = _post(receiver.port, proto_body(SPANS), headers)
            assert status == 401 and answer_headers["www-authenticate"] == "Bearer", auth
        with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
            stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            for metadata in ([], [("authorization", f"Bearer {token}x")], [("authorization", token)]):
                with pytest.raises(grpc.RpcError) as failure:
                    stub.Export(encode(SPANS), metadata=metadata, timeout=30)
                assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert _spans_in(db) == []  # nothing stored
        http_exporter = OTLPSpanExporter(endpoint=receiver.url, headers={"Authorization": f"Bearer {token}"})
        assert http_exporter.export(SPANS) is SpanExportResult.SUCCESS
        http_exporter.shutdown()  # type: ignore[no-untyped-call]
        other = llm_spans(sessions=1, turns=1)
        grpc_exporter = GrpcExporter(
            endpoint=f"127.0.0.1:{receiver.grpc_port}", insecure=True, headers={"authorization": f"Bearer {token}"}
        )
        assert grpc_exporter.export(other) is SpanExportResult.SUCCESS
        grpc_exporter.shutdown()
    assert len(_spans_in(db)) == len(SPANS) + len(other)
    assert "receiver ready" in receiver.log and token not in receiver.log
    files = list(db.parent.glob(db.name + "*"))
    assert db in files
    for path in files:
        assert token.encode() not in path.read_bytes(), path


class _CompareSpy:
    """Wraps the real ``hmac.compare_digest`` and records its arguments (it still does the comparing)."""

    def __init__(self) -> None:
        self.real = hmac.compare_digest
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((bytes(a), bytes(b)))
        return self.real(a, b)


def test_tokens_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """RELIABILITY 11: every request, with a missing, short, wrong or right token, on HTTP and on gRPC, is
    checked by exactly one ``hmac.compare_digest`` involving the expected token (time independent of where the
    tokens differ), never by ``==``; and nothing the receiver logs (at DEBUG) contains the token."""
    token = "constant-time-" + os.urandom(8).hex()
    spy = _CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    caplog.set_level(logging.DEBUG)
    store = open_store(f"sqlite:///{tmp_path / 'ct.db'}")
    options = ServeOptions(http=LOCAL, grpc=LOCAL, token=token, sweep_interval=3600.0, shutdown_grace=5.0)
    attempts = [None, "", "Bearer x", f"Bearer {token[:-1]}", f"Bearer {token}0", f"bearer {token}", token]
    try:
        with start_in_thread(replace(options), Pipeline(store)) as receiver:
            assert receiver.http_address is not None
            for auth in attempts:
                spy.calls.clear()
                headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth is not None else {})}
                status = _post(receiver.http_address.port, b"{}", headers)[0]
                assert status == (200 if auth == f"bearer {token}" else 401), auth
                assert len(spy.calls) == 1 and any(token.encode() in arg for arg in spy.calls[0]), (auth, spy.calls)
            with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
                stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
                for auth in attempts:
                    spy.calls.clear()
                    metadata = [("authorization", auth)] if auth is not None else []
                    try:
                        stub.Export(encode([]), metadata=metadata, timeout=30)
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as exc:
                        code = exc.code()
                    right = auth == f"bearer {token}"
                    assert code is (grpc.StatusCode.OK if right else grpc.StatusCode.UNAUTHENTICATED)
                    assert len(spy.calls) == 1 and any(token.encode() in arg for arg in spy.calls[0]), (auth, spy.calls)
    finally:
        store.close()
    assert token not in caplog.text


# --- 12 -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where", [["--http", "0.0.0.0:0", "--grpc", "off"], ["--http", "off", "--grpc", "0.0.0.0:0"],
              ["--http", "[::]:0", "--grpc", "off"]]
)
def test_public_address_without_a_token_refuses_to_start(tmp_path: Path, where: list[str]) -> None:
    """RELIABILITY 12: `galtea-otel serve` on a non-loopback address without --token-file exits at once with
    code 2 and says why, before opening the store or any port."""
    db = tmp_path / "never.db"
    result = command_exit(["serve", "--store", f"sqlite:///{db}", *where])
    assert result.returncode == 2, result.stderr
    assert "without a token" in result.stderr and "receiver ready" not in result.stderr
    assert not db.exists()


def test_default_bind_is_loopback_and_an_explicit_insecure_bind_warns(tmp_path: Path) -> None:
    """RELIABILITY 12: the defaults of `galtea-otel serve` are 127.0.0.1:4318 / 127.0.0.1:4317; an address
    given without a host binds 127.0.0.1; --allow-insecure-public starts but logs a WARNING saying INSECURE."""
    help_text = command_exit(["serve", "--help"]).stdout
    assert "127.0.0.1:4318" in help_text and "127.0.0.1:4317" in help_text
    with ServeProcess(f"sqlite:///{tmp_path / 'a.db'}", http=":0") as receiver:
        assert "http://127.0.0.1:" in receiver.ready_line
        other = _non_loopback_address()
        if other is not None:  # not reachable on the machine's other address
            with pytest.raises(OSError):
                socket.create_connection((other, receiver.port), timeout=5).close()
    with ServeProcess(f"sqlite:///{tmp_path / 'b.db'}", "--allow-insecure-public", http="0.0.0.0:0") as receiver:
        warnings = [line for line in receiver.log_lines if "WARNING" in line]
    assert any("INSECURE" in line and "WITHOUT AUTHENTICATION" in line for line in warnings), receiver.log


def _non_loopback_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address
