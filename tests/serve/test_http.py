"""OTLP/HTTP: the real OTLP/HTTP exporter and a plain HTTP client against a real receiver."""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from galtea_otel.pipeline import Pipeline
from galtea_otel.serve.server import Receiver

from ..decode.samples import encode, json_request, json_span, llm_spans, proto_body, to_otlp_json
from .conftest import GatedPipeline, ReceiverFactory, post, span_count

SPANS = llm_spans(sessions=3, turns=2)  # 3 x (1 + 2 x 2) = 15 spans


def _exporter(receiver: Receiver, **kw: Any) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"http://{receiver.http_address}/v1/traces", timeout=30, **kw)


def _sessions(pipeline: Pipeline) -> set[str]:
    return {s.custom_id for s in pipeline.store.list_sessions(limit=100)}


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate])
def test_real_exporter_records_are_committed_before_the_answer(
    receiver: Receiver, pipeline: Pipeline, store_url: str, compression: Compression
) -> None:
    exporter = _exporter(receiver, compression=compression)
    assert exporter.export(SPANS) is SpanExportResult.SUCCESS
    # Read right after the 200, through another connection: the records are already committed.
    assert span_count(store_url) == len(SPANS)
    assert _sessions(pipeline) == {"conv-0", "conv-1", "conv-2"}
    assert exporter.export(SPANS) is SpanExportResult.SUCCESS  # a replay changes nothing
    assert span_count(store_url) == len(SPANS)
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert receiver.app is not None and receiver.app.stats[200] == 2


def test_protobuf_in_protobuf_out(receiver: Receiver) -> None:
    response = post(receiver, proto_body(SPANS))
    assert response.status == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(response.body)
    assert not parsed.HasField("partial_success")


def test_json_in_json_out(receiver: Receiver, store_url: str) -> None:
    body = json.dumps(to_otlp_json(encode(SPANS))).encode()
    response = post(receiver, gzip.compress(body), "application/json", headers={"Content-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.body) == {}
    assert span_count(store_url) == len(SPANS)


def test_empty_request_succeeds(receiver: Receiver) -> None:
    assert post(receiver, b"").status == 200
    assert post(receiver, b"{}", "application/json").status == 200


def _hundred_with_three_bad_ids() -> dict[str, Any]:
    spans = [json_span(span_id=f"{i + 1:016x}", name=f"s{i}") for i in range(100)]
    spans[5]["traceId"] = "W46/95gDgQPSabYzgT/GDA=="  # base64
    spans[50]["spanId"] = "123"
    spans[99]["parentSpanId"] = "zz" * 8
    return json_request(*spans)


def test_partial_success_json(receiver: Receiver, store_url: str) -> None:
    response = post(receiver, json.dumps(_hundred_with_three_bad_ids()).encode(), "application/json")
    assert response.status == 200
    partial = json.loads(response.body)["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 3
    assert "traceId" in partial["errorMessage"] and "spanId" in partial["errorMessage"]
    assert span_count(store_url) == 97


def test_partial_success_protobuf(receiver: Receiver, store_url: str) -> None:
    request = encode(llm_spans(sessions=1, turns=1))
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = b"\x01" * 15
    response = post(receiver, request.SerializeToString())
    assert response.status == 200
    parsed = ExportTraceServiceResponse.FromString(response.body)
    assert parsed.partial_success.rejected_spans == 1
    assert "trace_id" in parsed.partial_success.error_message
    assert span_count(store_url) == len(spans) - 1


def test_undecodable_body_is_400_with_a_status(receiver: Receiver, store_url: str) -> None:
    garbage = os.urandom(1024)
    response = post(receiver, garbage)
    assert response.status == 400
    assert response.headers["content-type"] == "application/x-protobuf"
    status = Status.FromString(response.body)
    assert status.code == 3 and status.message
    response = post(receiver, b"{not json", "application/json")
    assert response.status == 400
    assert json.loads(response.body)["code"] == 3
    corrupt_gzip = gzip.compress(proto_body(SPANS))[:-20]
    assert post(receiver, corrupt_gzip, headers={"Content-Encoding": "gzip"}).status == 400
    assert span_count(store_url) == 0


class _CorruptingSession(requests.Session):
    """The wire between a real exporter and the receiver, replacing each body by 1 KiB of random bytes."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["data"] = os.urandom(1024)
        return super().request(*args, **kwargs)


def test_real_exporter_sends_an_undecodable_body_exactly_once(receiver: Receiver) -> None:
    exporter = _exporter(receiver, session=_CorruptingSession())
    assert exporter.export(SPANS) is SpanExportResult.FAILURE
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert receiver.app is not None
    assert dict(receiver.app.stats) == {400: 1}  # no retry of a 400


def test_body_over_the_limit_is_413(make_receiver: ReceiverFactory, store_url: str) -> None:
    limit = 64 * 1024
    with make_receiver(max_body_bytes=limit) as receiver:
        assert post(receiver, b"\x00" * (limit + 1)).status == 413  # Content-Length says so
        assert post(receiver, b"\x00" * (limit + 1), chunked=True).status == 413  # no length: reading stops
        inflating = gzip.compress(b"\x0a" * (limit + 1))  # small on the wire, over the limit inflated
        response = post(receiver, inflating, headers={"Content-Encoding": "gzip"})
        assert response.status == 413 and Status.FromString(response.body).code == 8
        assert post(receiver, b"{}", "application/json").status == 200  # still serving
        assert post(receiver, b"\x00" * limit).status == 400  # exactly the limit is read (and is garbage)
    assert span_count(store_url) == 0


def test_default_limit_is_20_mib(receiver: Receiver) -> None:
    assert receiver.options.max_body_bytes == 20 * 1024 * 1024
    assert post(receiver, b"\x00" * (20 * 1024 * 1024 + 1)).status == 413


def _gzip_bomb(inflated: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\x00" * (1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join(parts) + compressor.flush()


def _peak_rss_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def test_gzip_bomb_is_refused_without_inflating(receiver: Receiver) -> None:
    bomb = _gzip_bomb(1 << 30)  # about 1 MiB inflating to 1 GiB
    assert len(bomb) < 2 << 20
    measured = _reset_peak_rss()
    before = _peak_rss_kib()
    response = post(receiver, bomb, headers={"Content-Encoding": "gzip"})
    after = _peak_rss_kib()
    assert response.status == 413
    if measured and before is not None and after is not None:
        assert after - before < 100 * 1024, f"peak RSS rose by {(after - before) // 1024} MiB"
    assert post(receiver, proto_body(SPANS)).status == 200  # the server keeps serving


def test_wrong_method_is_405(receiver: Receiver) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = post(receiver, b"", method=method)
        assert response.status == 405
        assert response.headers["allow"] == "POST"


def test_other_paths_are_404(receiver: Receiver) -> None:
    assert post(receiver, b"", path="/v1/metrics").status == 404  # /v1/logs is served (issue 11)
    assert post(receiver, b"", path="/").status == 404


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [
        ("text/plain", None),
        (None, None),
        ("application/xml", None),
        ("application/x-protobuf", "br"),
        ("application/json", "compress"),
        ("application/x-protobuf", "gzip, br"),
    ],
)
def test_unsupported_media_is_415(receiver: Receiver, content_type: str | None, encoding: str | None) -> None:
    headers = {"Content-Encoding": encoding} if encoding else {}
    assert post(receiver, b"{}", content_type, headers=headers).status == 415


def test_token(
    make_receiver: ReceiverFactory, store_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    token = "tok-" + os.urandom(12).hex()
    caplog.set_level(logging.DEBUG)
    with make_receiver(token=token) as receiver:
        body = proto_body(SPANS)
        assert post(receiver, body).status == 401
        assert post(receiver, body, headers={"Authorization": f"Bearer {token}x"}).status == 401
        assert post(receiver, body, headers={"Authorization": f"Basic {token}"}).status == 401
        assert post(receiver, body, headers={"Authorization": token}).status == 401
        assert span_count(store_url) == 0  # nothing stored
        exporter = _exporter(receiver, headers={"Authorization": f"Bearer {token}"})
        assert exporter.export(SPANS) is SpanExportResult.SUCCESS
        exporter.shutdown()  # type: ignore[no-untyped-call]
        assert _exporter(receiver).export(SPANS) is SpanExportResult.FAILURE  # 401 is not retried
    assert span_count(store_url) == len(SPANS)
    assert token not in caplog.text
    db = Path(store_url.removeprefix("sqlite:///"))
    for path in db.parent.iterdir():
        assert token.encode() not in path.read_bytes()


def test_overload_is_503_with_retry_after(
    make_receiver: ReceiverFactory, pipeline: Pipeline, store_url: str
) -> None:
    gated = GatedPipeline(pipeline)
    with make_receiver(gated, max_inflight=1, max_queued=0) as receiver:
        first: list[int] = []
        worker = threading.Thread(target=lambda: first.append(post(receiver, proto_body(SPANS)).status))
        worker.start()
        assert gated.entered.wait(30)
        response = post(receiver, proto_body(SPANS))
        assert response.status == 503
        assert response.headers["retry-after"] == "1"
        assert Status.FromString(response.body).code == 14
        json_response = post(receiver, b"{}", "application/json")
        assert json_response.status == 503 and json.loads(json_response.body)["code"] == 14
        assert span_count(store_url) == 0  # the first one is still waiting: not committed, not answered
        gated.gate.set()
        worker.join()
        assert first == [200]
        assert span_count(store_url) == len(SPANS)


def test_real_exporter_retries_503_until_delivered(
    make_receiver: ReceiverFactory, pipeline: Pipeline, store_url: str
) -> None:
    gated = GatedPipeline(pipeline)
    other = llm_spans(sessions=1, turns=1)
    with make_receiver(gated, max_inflight=1, max_queued=0) as receiver:
        blocker = threading.Thread(target=lambda: post(receiver, proto_body(SPANS)))
        blocker.start()
        assert gated.entered.wait(30)
        results: list[SpanExportResult] = []
        exporting = threading.Thread(target=lambda: results.append(_exporter(receiver).export(other)))
        exporting.start()
        assert receiver.app is not None
        while receiver.app.stats[503] == 0 and exporting.is_alive():
            exporting.join(0.01)
        gated.gate.set()  # the receiver recovers; the exporter's retry (after Retry-After) gets through
        exporting.join()
        blocker.join()
        assert results == [SpanExportResult.SUCCESS]
        assert receiver.app.stats[503] >= 1
    assert span_count(store_url) == len(SPANS) + len(other)


# A store that fails for real (its write lock held): tests/serve/test_slow_clients.py, HTTP and gRPC.


def test_shutdown_lets_in_flight_requests_commit(
    make_receiver: ReceiverFactory, pipeline: Pipeline, store_url: str
) -> None:
    gated = GatedPipeline(pipeline)
    statuses: list[int] = []
    with make_receiver(gated) as receiver:
        worker = threading.Thread(target=lambda: statuses.append(post(receiver, proto_body(SPANS)).status))
        worker.start()
        assert gated.entered.wait(30)
        receiver.request_stop()
        gated.gate.set()
        worker.join()
    assert statuses == [200]
    assert span_count(store_url) == len(SPANS)


def test_a_huge_json_number_is_a_partial_success(receiver: Receiver, store_url: str) -> None:
    """Issue 12, point 6: a 5,000-digit number in one span: 200 with rejectedSpans 1, the 99 others stored."""
    spans = [json_span(span_id=f"{i + 1:016x}", name=f"s{i}") for i in range(100)]
    spans[42]["attributes"] = [{"key": "n", "value": {"intValue": "HUGE"}}]
    body = json.dumps(json_request(*spans)).replace('"HUGE"', "7" * 5000).encode()
    response = post(receiver, body, "application/json")
    assert response.status == 200
    partial = json.loads(response.body)["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1 and "spans[42]" in partial["errorMessage"]
    assert span_count(store_url) == 99
