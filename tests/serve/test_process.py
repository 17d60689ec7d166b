"""galtea_otel.serve.process: the receiver's and the assembler's own processes tune their garbage collector; a
receiver embedded in another program leaves that program's alone."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

from galtea_otel.serve.options import Address, ServeOptions
from galtea_otel.serve.process import YOUNG_THRESHOLD
from galtea_otel.serve.server import start_in_thread

ROOT = Path(__file__).resolve().parents[2]
LOCAL = Address("127.0.0.1", 0)


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_serve_entry_point_tunes_its_own_collector_once_ready(tmp_path: Path) -> None:
    """``run_server`` (what ``galtea-otel serve`` runs) in a process of its own: once it is ready, the young
    threshold is raised and startup's objects are frozen; the probe then stops it as a signal would."""
    out = _run("""
        import gc, os, signal, sys, threading, time
        from galtea_otel.serve.options import Address, ServeOptions
        from galtea_otel.serve.server import run_server

        before = gc.get_threshold()[0], gc.get_freeze_count()

        def probe():
            deadline = time.monotonic() + 60
            while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            print(*before, gc.get_threshold()[0], gc.get_freeze_count(), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=probe, daemon=True).start()
        run_server(ServeOptions(store_url=sys.argv[1], http=Address("127.0.0.1", 0), grpc=None,
                                sweep_interval=3600.0))
    """, f"sqlite:///{tmp_path / 's.db'}")
    young_before, frozen_before, young, frozen = map(int, out.split())
    assert young_before < YOUNG_THRESHOLD and frozen_before == 0
    assert young == YOUNG_THRESHOLD
    assert frozen > 1000  # the modules, the store, the price table


def test_the_assembler_entry_point_tunes_its_own_collector(tmp_path: Path) -> None:
    """``run_assembler(own_process=True)`` (what ``python -m galtea_otel.serve.inbox`` runs): tuned before it
    takes its first entry; with its control stream at its end it drains the (empty) inbox and returns."""
    out = _run("""
        import gc, io, sys
        from galtea_otel.serve.inbox import run_assembler
        from galtea_otel.settings import PipelineSettings

        run_assembler(sys.argv[1], PipelineSettings(), control=io.BytesIO(b""), niceness=0, own_process=True)
        print(gc.get_threshold()[0], gc.get_freeze_count())
    """, f"sqlite:///{tmp_path / 's.db'}")
    young, frozen = map(int, out.split())
    assert young == YOUNG_THRESHOLD and frozen > 1000


def test_an_embedded_receiver_leaves_the_programs_collector_alone(tmp_path: Path) -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    options = ServeOptions(store_url=f"sqlite:///{tmp_path / 's.db'}", http=LOCAL, grpc=LOCAL, sweep_interval=3600.0)
    with start_in_thread(options) as receiver:
        assert receiver.http_address is not None
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_release_memory_gives_freed_heap_pages_back() -> None:
    """A batch's texts (1 KB each: malloc's, not Python's small-object arenas) freed under an object still
    alive above them stay resident until ``release_memory`` (glibc's ``malloc_trim``), which the assembler calls
    when its inbox empties and the receiver when its requests stop. In a process of its own, measured from
    ``/proc/self/statm``."""
    out = _run("""
        import os
        from galtea_otel.serve.process import release_memory

        def resident_mb():
            with open("/proc/self/statm") as statm:
                return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

        texts = [os.urandom(512).hex() for _ in range(100_000)]  # 100 MB of 1 KB strings
        pin = bytearray(4096)  # allocated after them: the heap's top stays in use
        loaded = resident_mb()
        del texts
        freed = resident_mb()
        release_memory()
        print(loaded, freed, resident_mb(), len(pin))
    """)
    loaded, freed, trimmed, _ = (float(v) for v in out.split())
    assert loaded - freed < 30, "glibc gave the pages back by itself: this test no longer shows the trim"
    assert freed - trimmed > 60, (loaded, freed, trimmed)
