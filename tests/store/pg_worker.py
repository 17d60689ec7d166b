"""A receiver stand-in for the multi-process store test (run as a script, not collected by pytest).

``python pg_worker.py STORE_URL BATCHES.pickle [--jitter SECONDS] [--lockstep]``: opens the store, prints
``ready``, waits for a line on stdin, then ingests each pickled batch of ``SpanData`` through its own
``Pipeline`` and prints ``done ACCEPTED``. With ``--lockstep`` it also waits for a line before each batch and
prints ``ok`` after it, so that the test can make several workers write their n-th batches together.
No retries: a deadlock or any other store error fails the worker, and so the test.

With ``--jitter SECONDS``, each write primitive of the (real) store is followed by a random pause of up to
that long, inside its transaction: this widens the windows in which concurrent writers overlap, so that a
store whose locking is wrong shows it in a short run.
"""

from __future__ import annotations

import pickle
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from galtea_otel.pipeline import Pipeline
from galtea_otel.store import Store, open_store

_PAUSED = {"insert_spans", "trace_rows", "set_keys", "session_rows", "upsert_session"}


class _JitterTx:
    def __init__(self, tx: Any, pause: Callable[[], None]) -> None:
        self._tx, self._pause = tx, pause

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._tx, name)
        if name not in _PAUSED:
            return method

        def paused(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            self._pause()
            return result

        return paused


class JitterStore:
    """The real store, with random pauses after each write primitive (see the module docstring)."""

    def __init__(self, store: Store, jitter: float, seed: int) -> None:
        self._store, self._jitter, self._rng = store, jitter, random.Random(seed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _pause(self) -> None:
        time.sleep(self._rng.uniform(0, self._jitter))

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._store.transaction() as tx:
            yield _JitterTx(tx, self._pause)


def main() -> int:
    url, batches_path = sys.argv[1], sys.argv[2]
    options = sys.argv[3:]
    jitter = float(options[options.index("--jitter") + 1]) if "--jitter" in options else 0.0
    lockstep = "--lockstep" in options
    with open(batches_path, "rb") as f:
        batches = pickle.load(f)
    store = open_store(url)
    pipeline = Pipeline(JitterStore(store, jitter, seed=len(batches_path)) if jitter else store)  # type: ignore[arg-type]
    print("ready", flush=True)
    sys.stdin.readline()
    accepted = 0
    try:
        for batch in batches:
            if lockstep:
                sys.stdin.readline()
            result = pipeline.ingest(batch)
            if lockstep:
                print("ok", flush=True)
            if result.rejected:
                print(f"rejected: {result.errors}", file=sys.stderr, flush=True)
                return 1
            accepted += result.accepted
    finally:
        store.close()
    print(f"done {accepted}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
