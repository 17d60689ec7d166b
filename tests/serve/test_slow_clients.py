"""Issue 12, points 1-2: slow and idle clients cannot starve the receiver (OTLP/HTTP and OTLP/gRPC).

The attacks are real sockets on 127.0.0.1, bounded, and stopped by the tests themselves: connections that never
finish their headers (or their HTTP/2 handshake), and authenticated requests whose body (or gRPC message) trickles
in at about 1 byte/s. Meanwhile a real, authenticated OTLP exporter exports, and its spans are stored. No absolute
timing assertion: the export under attack is compared with an unloaded one measured in the same test.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.server import Receiver

from ..decode.samples import llm_spans, proto_body
from .conftest import ReceiverFactory, span_count

IDLE_CONNECTIONS = 1000
SLOW_BODIES = 8
SLOWDOWN_BOUND = 50  # the export under attack may take this many times an unloaded one (it takes about 1-3x)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _closed_by_server(sock: socket.socket, timeout: float = 30.0) -> bool:
    """True when the server closed ``sock`` (EOF or reset) within ``timeout``; what it sent is skipped."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class _Trickle(threading.Thread):
    """Sends one byte per ``interval`` to each socket until stopped (the slow bodies)."""

    def __init__(self, socks: list[socket.socket], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.socks = socks
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            for sock in self.socks:
                with suppress(OSError):
                    sock.send(b"\x0a")

    def stop(self) -> None:
        self.stopped.set()
        self.join()


@contextmanager
def _open_sockets(count: int, port: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = _connect(port)
            if first_bytes:
                sock.sendall(first_bytes)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _timed_export(exporter: HttpExporter | GrpcExporter) -> tuple[SpanExportResult, float]:
    spans = llm_spans(sessions=1, turns=2)
    started = time.perf_counter()
    result = exporter.export(spans)
    return result, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------ OTLP/HTTP


def test_http_exporter_gets_through_1000_idle_and_8_slow_body_connections(
    make_receiver: ReceiverFactory, store_url: str
) -> None:
    token = "tok-" + os.urandom(8).hex()
    auth = f"Bearer {token}"
    with make_receiver(token=token, grpc=None) as receiver, ExitStack() as stack:
        assert receiver.http_address is not None and receiver.app is not None
        port = receiver.http_address.port
        exporter = HttpExporter(endpoint=f"http://{receiver.http_address}/v1/traces", timeout=30,
                                headers={"Authorization": auth})
        unloaded = []
        for _ in range(3):
            result, took = _timed_export(exporter)
            assert result is SpanExportResult.SUCCESS
            unloaded.append(took)
        exporter.shutdown()  # type: ignore[no-untyped-call]
        stored_before = span_count(store_url)
        # 1,000 connections that never finish their headers (no token yet: it would come in a later header).
        stack.enter_context(_open_sockets(IDLE_CONNECTIONS, port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"))
        # 8 authenticated requests announcing 100 kB, then sending 1 byte per second.
        slow_head = (f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                     "Content-Type: application/x-protobuf\r\nContent-Length: 100000\r\n\r\n").encode()
        slow = stack.enter_context(_open_sockets(SLOW_BODIES, port, slow_head))
        trickle = _Trickle(slow)
        trickle.start()
        stack.callback(trickle.stop)
        # The per-client cap (256 by default) closes the oldest header-incomplete connections to make room:
        # wait until the receiver has taken in all of them.
        evictions = IDLE_CONNECTIONS + SLOW_BODIES - 256
        for _ in range(600):
            if receiver.app.stats["evicted"] >= evictions:
                break
            time.sleep(0.05)
        assert receiver.app.stats["evicted"] == evictions

        loaded_exporter = HttpExporter(endpoint=f"http://{receiver.http_address}/v1/traces", timeout=30,
                                       headers={"Authorization": auth})
        result, loaded = _timed_export(loaded_exporter)
        loaded_exporter.shutdown()  # type: ignore[no-untyped-call]
        assert result is SpanExportResult.SUCCESS
        assert span_count(store_url) == stored_before + len(llm_spans(sessions=1, turns=2))
        assert receiver.app.stats[503] == 0  # no slot was held by the slow bodies
        assert receiver.app.stats["evicted"] == evictions + 1  # the exporter's connection made room too
        assert _closed_by_server(slow[0], timeout=0.1) is False  # the slow bodies are still being read
        print(f"unloaded exports {[round(t, 3) for t in unloaded]} s, under attack {loaded:.3f} s")
        assert loaded < SLOWDOWN_BOUND * max(unloaded), (loaded, unloaded)


def test_headers_that_never_complete_are_cut_off(make_receiver: ReceiverFactory) -> None:
    with make_receiver(header_timeout=0.5, grpc=None) as receiver:
        assert receiver.http_address is not None and receiver.app is not None
        sock = _connect(receiver.http_address.port)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a header line now and then does not extend the deadline
            time.sleep(0.1)
            with suppress(OSError):  # (a loaded machine may reach the deadline first: cut off already)
                sock.sendall(b"X-Slow: 1\r\n")
        assert _closed_by_server(sock)
        sock.close()
        assert receiver.app.stats["header_timeout"] == 1
        silent = _connect(receiver.http_address.port)  # connected, nothing sent
        assert _closed_by_server(silent)
        silent.close()


def test_a_body_slower_than_the_minimum_rate_gets_408(make_receiver: ReceiverFactory, store_url: str) -> None:
    with make_receiver(body_timeout=0.5, body_min_rate=1000, grpc=None) as receiver:
        assert receiver.http_address is not None and receiver.app is not None
        sock = _connect(receiver.http_address.port)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 10000\r\n\r\n")
        answer = b""
        sock.settimeout(0.05)
        for _ in range(400):  # 1 byte per 50 ms: 20 bytes/s, far below the 1,000 asked for
            try:
                sock.send(b"\x0a")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert receiver.app.stats["body_timeout"] == 1
    assert span_count(store_url) == 0


def test_per_client_cap_closes_the_oldest_idle_connections(make_receiver: ReceiverFactory) -> None:
    with make_receiver(max_connections_per_client=10, grpc=None) as receiver, ExitStack() as stack:
        assert receiver.http_address is not None and receiver.app is not None
        port = receiver.http_address.port
        socks = stack.enter_context(_open_sockets(15, port, b"POST /v1/traces HTTP/1.1\r\n"))
        for _ in range(600):  # a loaded machine accepts them a while after they connected
            if receiver.app.stats["evicted"] >= 5:
                break
            time.sleep(0.05)
        assert receiver.app.stats["evicted"] == 5
        closed = [_closed_by_server(sock, timeout=30 if n < 5 else 0.5) for n, sock in enumerate(socks)]
        assert closed == [True] * 5 + [False] * 10  # the 5 oldest made room for the 10 newest
        # A client at its cap still gets served: its new connection evicts an idle one.
        response = _raw_request(port, proto_body(llm_spans(sessions=1, turns=1)))
        assert response.startswith(b"HTTP/1.1 200 ")


def test_total_cap_refuses_only_when_every_connection_is_busy(
    make_receiver: ReceiverFactory, store_url: str
) -> None:
    with make_receiver(max_connections=4, grpc=None) as receiver, ExitStack() as stack:
        assert receiver.http_address is not None and receiver.app is not None
        port = receiver.http_address.port
        head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                b"Content-Length: 1000\r\n\r\n")
        busy = stack.enter_context(_open_sockets(4, port, head))  # all four are reading a body
        time.sleep(0.2)
        extra = _connect(port)
        assert _closed_by_server(extra)
        extra.close()
        assert receiver.app.stats["refused"] >= 1
        for sock in busy:
            sock.close()
        response = _raw_request(port, proto_body(llm_spans(sessions=1, turns=1)), attempts=50)
        assert response.startswith(b"HTTP/1.1 200 ")


def _raw_request(port: int, body: bytes, *, chunked: bool = False, attempts: int = 1,
                 extra_headers: bytes = b"") -> bytes:
    """One POST over a raw socket; the whole answer (the server closes or answers with Content-Length).

    With ``attempts`` > 1, a connection refused or closed unanswered is tried again."""
    for attempt in range(attempts):
        sock = _connect(port)
        try:
            head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n" + extra_headers
            if chunked:
                parts = [body[i : i + 1000] for i in range(0, len(body), 1000)]
                payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + payload)
            else:
                sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = _read_response(sock)
            if answer or attempt + 1 == attempts:
                return answer
            # Closed unanswered: refused while the server had not yet noticed earlier connections closing.
        except OSError:
            if attempt + 1 == attempts:
                raise
        finally:
            sock.close()
        time.sleep(0.1)
    raise AssertionError("unreachable")


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_chunked_bodies_are_accepted_and_the_connection_kept(
    receiver: Receiver, store_url: str
) -> None:
    """Node.js's OTLP exporter sends chunked bodies (no Content-Length): read like any other, up to the limit."""
    assert receiver.http_address is not None
    spans = llm_spans(sessions=2, turns=2)
    response = _raw_request(receiver.http_address.port, proto_body(spans), chunked=True)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert span_count(store_url) == len(spans)
    # Two chunked requests on one kept-alive connection.
    sock = _connect(receiver.http_address.port)
    more = [llm_spans(sessions=1, turns=1) for _ in range(2)]
    for batch in more:
        body = proto_body(batch)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        answer = _read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
        assert not ExportTraceServiceResponse.FromString(answer.partition(b"\r\n\r\n")[2]).HasField(
            "partial_success")
    sock.close()
    assert span_count(store_url) == len(spans) + sum(len(b) for b in more)


def test_token_is_checked_before_the_body_is_read(make_receiver: ReceiverFactory, store_url: str) -> None:
    """A request without the token is answered 401 on its headers: its (never sent) body is not waited for."""
    with make_receiver(token="secret-token", grpc=None) as receiver:
        assert receiver.http_address is not None
        sock = _connect(receiver.http_address.port)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 100000\r\n\r\n")  # then nothing
        sock.settimeout(30)
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 401 ")
    assert span_count(store_url) == 0


# ------------------------------------------------------------------------------------------------ OTLP/gRPC


def test_grpc_exporter_gets_through_1000_idle_connections_and_8_withheld_messages(
    make_receiver: ReceiverFactory, store_url: str
) -> None:
    token = "tok-" + os.urandom(8).hex()
    metadata = (("authorization", f"Bearer {token}"),)
    with make_receiver(token=token, http=None) as receiver, ExitStack() as stack:
        assert receiver.grpc_address is not None
        target = str(receiver.grpc_address)
        exporter = GrpcExporter(endpoint=target, insecure=True, headers=dict(metadata), timeout=30)
        unloaded = []
        for _ in range(3):
            result, took = _timed_export(exporter)
            assert result is SpanExportResult.SUCCESS
            unloaded.append(took)
        stored_before = span_count(store_url)
        # 1,000 TCP connections that never send the HTTP/2 preface.
        stack.enter_context(_open_sockets(IDLE_CONNECTIONS, receiver.grpc_address.port, b""))
        # 8 authenticated calls whose message is withheld (more than the 4 ingest slots).
        release = threading.Event()
        stack.callback(release.set)
        channel = stack.enter_context(grpc.insecure_channel(target))
        export = channel.stream_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")

        def withheld() -> Iterator[bytes]:
            release.wait(60)
            yield proto_body(llm_spans(sessions=1, turns=1))

        calls = [export.future(withheld(), metadata=metadata, timeout=60) for _ in range(SLOW_BODIES)]
        for call in calls:
            stack.callback(call.cancel)
        time.sleep(0.5)  # the calls are open on the server
        result, loaded = _timed_export(exporter)
        exporter.shutdown()
        assert result is SpanExportResult.SUCCESS
        assert span_count(store_url) == stored_before + len(llm_spans(sessions=1, turns=2))
        assert receiver.grpc_service.stats.get("UNAVAILABLE", 0) == 0
        print(f"unloaded exports {[round(t, 3) for t in unloaded]} s, under attack {loaded:.3f} s")
        assert loaded < SLOWDOWN_BOUND * max(unloaded), (loaded, unloaded)


def test_grpc_withheld_message_is_cancelled_and_handshakes_time_out(make_receiver: ReceiverFactory) -> None:
    with make_receiver(body_timeout=0.5, header_timeout=0.5, http=None) as receiver:
        assert receiver.grpc_address is not None
        silent = _connect(receiver.grpc_address.port)  # never sends the HTTP/2 preface
        with grpc.insecure_channel(str(receiver.grpc_address)) as channel:
            export = channel.stream_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            release = threading.Event()

            def withheld() -> Iterator[bytes]:
                release.wait(30)
                yield b""

            with pytest.raises(grpc.RpcError) as raised:
                export(withheld(), timeout=30)
            release.set()
        assert raised.value.code() is grpc.StatusCode.CANCELLED
        for _ in range(200):  # the client may hear of the cancel before the handler counted it
            if receiver.grpc_service.stats["body_timeout"]:
                break
            time.sleep(0.05)
        assert receiver.grpc_service.stats["body_timeout"] == 1
        assert _closed_by_server(silent)
        silent.close()


# ---------------------------------------------------------------------------- a store that fails for real


def test_grpc_answers_unavailable_not_ok_when_the_store_fails(
    make_receiver: ReceiverFactory, locked_store: tuple[Pipeline, sqlite3.Connection], store_url: str
) -> None:
    """Ack only after commit, over gRPC: the store's write lock is held by another connection, so the commit
    really fails ("database is locked"); the call gets UNAVAILABLE + RetryInfo, not OK; once the lock is gone
    the same request is stored."""
    pipeline, holder = locked_store
    spans = llm_spans(sessions=1, turns=2)
    with make_receiver(pipeline, http=None) as receiver, grpc.insecure_channel(str(receiver.grpc_address)) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(grpc.RpcError) as raised:
            export(proto_body(spans), timeout=30)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        trailers = dict(raised.value.trailing_metadata() or ())
        assert "google.rpc.retryinfo-bin" in trailers
        holder.execute("ROLLBACK")
        assert span_count(store_url) == 0
        export(proto_body(spans), timeout=30)
    assert span_count(store_url) == len(spans)


def test_http_answers_503_not_200_when_the_store_fails(
    make_receiver: ReceiverFactory, locked_store: tuple[Pipeline, sqlite3.Connection], store_url: str
) -> None:
    pipeline, holder = locked_store
    spans = llm_spans(sessions=1, turns=2)
    with make_receiver(pipeline, grpc=None) as receiver:
        assert receiver.http_address is not None
        holder.execute("BEGIN IMMEDIATE")
        response = _raw_request(receiver.http_address.port, proto_body(spans))
        assert response.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in response.lower()
        holder.execute("ROLLBACK")
        assert span_count(store_url) == 0
        assert _raw_request(receiver.http_address.port, proto_body(spans)).startswith(b"HTTP/1.1 200 ")
    assert span_count(store_url) == len(spans)
