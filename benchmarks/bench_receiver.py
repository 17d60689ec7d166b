"""The receiver's durable ingest rate, against the in-process floor, plus its start time and memory.

    python benchmarks/bench_receiver.py [--batches 60] [--stream 1000000]

- *durable rate*: spans/s of OTLP/HTTP protobuf + gzip, batches of 512 realistic LLM spans (about 12
  attributes, 1 KB input and output), from the first request to the last acknowledgement, each acknowledged
  after commit, from 1 and from 4 client threads, against ``galtea-otel serve`` running as its own process;
- *floor*, in the same run: gunzip + protobuf decode + walk + pipeline ingest into SQLite of the same batches,
  in process;
- *ready*: from process start to the "ready" log line; *idle RSS*: resident memory after it idled a second;
- *stream*: ``--stream`` spans pushed through one receiver, its resident memory sampled all along.

Bars (issue 3): durable >= 0.6x floor; idle RSS <= 80 MB; ready <= 1 s; RSS flat while 1,000,000 spans stream.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _spans import make_spans  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from galtea_otel.decode.otlp_proto import decode_proto  # noqa: E402
from galtea_otel.pipeline import Pipeline  # noqa: E402
from galtea_otel.store import open_store  # noqa: E402

BATCH = 512
KEY_ATTRIBUTES = {"galtea.session.custom_id", "gen_ai.conversation.id", "session.id"}


def template() -> ExportTraceServiceRequest:
    """One request of exactly 512 spans, whole sessions of 1 session span, 1 marker and 5 turns of 4 spans."""
    spans = make_spans(sessions=BATCH // 22 + 1, turns=5)[:BATCH]
    return encode_spans(spans)


def batch_bodies(base: ExportTraceServiceRequest, count: int, offset: int = 0) -> Iterator[bytes]:
    """``count`` gzip bodies of the template, each with its own trace ids, span ids and session keys."""
    for b in range(offset, offset + count):
        request = ExportTraceServiceRequest()
        request.CopyFrom(base)
        tag = b.to_bytes(6, "big")
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span.trace_id = tag + span.trace_id[6:]
                    span.span_id = tag[2:] + span.span_id[4:]
                    if span.parent_span_id:
                        span.parent_span_id = tag[2:] + span.parent_span_id[4:]
                    for kv in span.attributes:
                        if kv.key in KEY_ATTRIBUTES:
                            kv.value.string_value = f"b{b}-{kv.value.string_value}"
        yield gzip.compress(request.SerializeToString(), 6)


def floor(bodies: list[bytes], folder: Path) -> float:
    store = open_store(f"sqlite:///{folder / 'floor.db'}")
    pipeline = Pipeline(store)
    start = time.perf_counter()
    for body in bodies:
        pipeline.ingest(decode_proto(gzip.decompress(body)).spans)
    elapsed = time.perf_counter() - start
    store.close()
    return len(bodies) * BATCH / elapsed


class ReceiverProcess:
    """``galtea-otel serve`` as a child process on a free port (gRPC off)."""

    def __init__(self, folder: Path, name: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        command = [
            sys.executable,
            "-c",
            "from galtea_otel.cli.main import main; main()",
            "serve",
            "--store",
            f"sqlite:///{folder / (name + '.db')}",
            "--http",
            f"127.0.0.1:{self.port}",
            "--grpc",
            "off",
        ]
        started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if "receiver ready" in line:
                break
        else:
            raise RuntimeError("the receiver did not start")
        self.ready_seconds = time.perf_counter() - started
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def push(port: int, bodies: Callable[[], bytes | None], threads: int) -> tuple[int, float]:
    """Post bodies until exhausted from ``threads`` keep-alive connections; retry 503s. (spans, seconds)"""
    acknowledged = [0]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}
        while (body := bodies()) is not None:
            while True:
                conn.request("POST", "/v1/traces", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
                if response.status != 503:
                    raise RuntimeError(f"HTTP {response.status}")
                time.sleep(float(response.getheader("Retry-After") or 1))
            with lock:
                acknowledged[0] += BATCH
        conn.close()

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return acknowledged[0], time.perf_counter() - start


def from_list(bodies: list[bytes]) -> Callable[[], bytes | None]:
    items = iter(bodies)
    lock = threading.Lock()

    def next_body() -> bytes | None:
        with lock:
            return next(items, None)

    return next_body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=60, help="batches of 512 spans per rate measurement")
    parser.add_argument("--stream", type=int, default=200_000, help="spans for the memory run (0: skip)")
    args = parser.parse_args()
    base = template()
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bodies = list(batch_bodies(base, args.batches))
        gc.collect()
        gc.freeze()  # the benchmark's own objects must not slow the floor's garbage collections
        floor_rate = floor(bodies, folder)
        results["floor (gunzip + decode + ingest, in process)"] = f"{floor_rate:,.0f} spans/s"
        for threads in (1, 4):
            receiver = ReceiverProcess(folder, f"rate{threads}")
            if threads == 1:
                time.sleep(1.0)
                results["ready after start"] = f"{receiver.ready_seconds:.2f} s (bar 1 s)"
                results["idle RSS"] = f"{receiver.rss_mb():.0f} MB (bar 80 MB)"
            fresh = list(batch_bodies(base, args.batches, offset=10_000 * threads))
            spans, seconds = push(receiver.port, from_list(fresh), threads)
            rate = spans / seconds
            results[f"durable rate, {threads} client thread(s)"] = (
                f"{rate:,.0f} spans/s = {rate / floor_rate:.2f}x floor (bar 0.6x)"
            )
            receiver.stop()
        if args.stream:
            receiver = ReceiverProcess(folder, "stream")
            generator = batch_bodies(base, args.stream // BATCH, offset=100_000)
            lock = threading.Lock()

            def next_body() -> bytes | None:
                with lock:
                    return next(generator, None)

            samples: list[float] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.5):
                    samples.append(receiver.rss_mb())

            sampler = threading.Thread(target=sample)
            sampler.start()
            spans, seconds = push(receiver.port, next_body, 4)
            done.set()
            sampler.join()
            receiver.stop()
            tail = samples[len(samples) // 2 :] or samples
            results[f"RSS while {spans:,} spans stream"] = (
                f"min {min(samples):.0f} / max {max(samples):.0f} MB; second half {min(tail):.0f}-"
                f"{max(tail):.0f} MB ({spans / seconds:,.0f} spans/s)"
            )
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
