"""What galtea-otel's own processes (the receiver ``serve`` runs, its assembler) do that no library code may do
inside an application: tune the garbage collector, and give freed memory back to the system when idle.

A batch of the receiver's interleaved workload (1,200 spans of 400 sessions) allocates tens of thousands of
short-lived containers (rows, records, aggregates), and the collector's default young threshold (700) runs a
collection every few hundred of them, promoting the batch's live objects, which then count towards full
collections of everything the process holds (its modules, the price table). Measured on that workload in a
receiver-like process (``benchmarks/bench_receiver.py``'s 40 interleaved requests, BENCHMARKS.md, stop 23): the
collector took 0.59-0.66 s of 9-11 s of ingest, 0.37-0.44 s with the startup objects frozen, 0.14-0.17 s frozen
and with a young threshold of 10,000; peak RSS 69 MB in all three.
"""

from __future__ import annotations

import functools
import gc
from typing import Any

YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)


def tune_gc() -> None:
    """Freeze what startup made (a full collection never scans it again) and collect the young generation less
    often. Called once a process is ready, by the receiver's and the assembler's entry points only."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(YOUNG_THRESHOLD, young), middle, old)


def release_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``): a batch's texts (1 KB and up, so
    malloc's, not Python's small-object arenas) are freed after it, but glibc keeps the pages for the next
    allocation, and an idle assembler would go on holding its largest batch. Called once the work runs out
    (the inbox emptied); a no-op where there is no glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
