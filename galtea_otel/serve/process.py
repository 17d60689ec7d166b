"""What galtea-otel's own processes (the receiver ``serve`` runs, its assembler) do that no library code may do
inside an application: tune the garbage collector.

A batch of the receiver's interleaved workload (1,200 spans of 400 sessions) allocates tens of thousands of
short-lived containers (rows, records, aggregates), and the collector's default young threshold (700) runs a
collection every few hundred of them, promoting the batch's live objects, which then count towards full
collections of everything the process holds (its modules, the price table). Measured on that workload in a
receiver-like process (``benchmarks/bench_receiver.py``'s 40 interleaved requests, BENCHMARKS.md, stop 23): the
collector took 0.59-0.66 s of 9-11 s of ingest, 0.37-0.44 s with the startup objects frozen, 0.14-0.17 s frozen
and with a young threshold of 10,000; peak RSS 69 MB in all three.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)


def tune_gc() -> None:
    """Freeze what startup made (a full collection never scans it again) and collect the young generation less
    often. Called once a process is ready, by the receiver's and the assembler's entry points only."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(YOUNG_THRESHOLD, young), middle, old)
