"""RELIABILITY 5 on OTLP/gRPC: memory while the store is stalled (about 8 s). The HTTP side is
tests/reliability/test_receiver_backpressure.py (100 MiB: it never reads a flooding body)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from galtea_otel.serve.grpc_service import EXTRA_READERS, READERS_PER_SLOT

from ..decode.samples import encode, llm_spans
from ..reliability.receiver_proc import ServeProcess
from ..reliability.test_receiver_backpressure import MAX_BODY, STALL_SECONDS


def test_stalled_store_bounds_grpc_memory_too(tmp_path: Path) -> None:
    """RELIABILITY 5, gRPC: 32 clients send 6 MiB messages during a 5 s stall (about 0.2 GiB waiting at once).

    The bound (``ServeOptions``, ``galtea_otel.serve.grpc_service``): a message is read only once its RPC holds
    one of ``2 x max_inflight + 4`` reading slots (8 here), and decoded only once it holds one of ``max_inflight``
    ingest slots (2 here); each other call waits, or is refused, holding at most its HTTP/2 stream window (64 KiB:
    2 MiB in all). Measured: a rise of 78-112 MiB over runs (2 messages decoded and translated, and 6 read ones
    waiting for a slot; the spread is the allocator's and the threads' timing, the baseline being taken once
    RSS has settled). The bound follows from the design, not from a measurement: the 8 messages a reading slot
    lets in, plus up to 6 times the message for each of the 2 being decoded and translated (the bytes, the
    decoded request, the rows' text, the turn records): (8 + 2 x 6) x 6.3 MiB, about 128 MiB. Reading the
    message only after the ingest slot (the previous design) rose by
    ~33 MiB, but let calls that withhold their message hold every ingest slot (issue 12). Before either (a unary
    handler, whose message grpcio reads and parses before the handler runs, and BDP probing, which lets grpcio
    take in a whole message nobody reads): ~250-370 MiB."""
    db = tmp_path / "stalled-grpc.db"
    message = encode(llm_spans(sessions=1, turns=1, big=3 << 20))  # input and output of 3 MiB each
    assert 6 << 20 < message.ByteSize() < MAX_BODY
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    # inline: the requests wait for the stalled store itself (deferred ones wait for the inbox's limit instead,
    # tests/reliability/test_deferred_assembly.py)
    with ServeProcess(f"sqlite:///{db}", "--assemble", "inline", "--max-inflight", "2", "--max-body-bytes",
                      str(MAX_BODY), grpc=True) as rcv:
        target = f"127.0.0.1:{rcv.grpc_port}"
        with grpc.insecure_channel(target) as channel:
            TraceServiceStub(channel).Export(message, timeout=30)  # type: ignore[no-untyped-call]
        baseline = rcv.settled_rss_kib()
        rcv.reset_peak()
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        stop = threading.Event()

        def send() -> None:
            with grpc.insecure_channel(target) as channel:
                stub = TraceServiceStub(channel)  # type: ignore[no-untyped-call]
                while not stop.is_set():
                    try:
                        stub.Export(message, timeout=STALL_SECONDS + 30)
                        code = "OK"
                    except grpc.RpcError as exc:
                        code = exc.code().name
                    with lock:
                        codes[code] += 1

        senders = [threading.Thread(target=send) for _ in range(32)]
        for thread in senders:
            thread.start()
        peak = baseline
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            peak = max(peak, rcv.status_kib("VmRSS"))
            time.sleep(0.05)
        stop.set()
        peak = max(peak, rcv.status_kib("VmHWM"))
        holder.execute("ROLLBACK")
        holder.close()
        for thread in senders:
            thread.join()
    print(f"gRPC: baseline {baseline // 1024} MiB, peak rise {(peak - baseline) / 1024:.1f} MiB, codes {dict(codes)}")
    bound_kib = (READERS_PER_SLOT * 2 + EXTRA_READERS + 2 * 6) * message.ByteSize() // 1024
    assert peak - baseline < bound_kib, \
        f"resident memory rose by {(peak - baseline) // 1024} MiB (bound {bound_kib // 1024} MiB)"
    assert codes["UNAVAILABLE"] + codes["RESOURCE_EXHAUSTED"] >= 32, dict(codes)
    assert set(codes) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, dict(codes)
