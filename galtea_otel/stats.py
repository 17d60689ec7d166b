"""A small thread-safe registry of counters, and the one way galtea-otel reports its own failures.

Both sides write here: the instrumentation (spans started in sessions, truncations, redaction failures,
internal errors) and the exporter (spans exported, export failures, dropped spans). ``galtea_otel.stats()``
returns :func:`snapshot`.

With the default exporter every span the application ends is counted once, so at any moment

    spans ended = spans_exported + spans_duplicates + spans_rejected + spans_lost + spans_dropped
                  + spans_unconfirmed

(``spans_dropped``: the export queue was full or shut down; ``spans_lost``: the store failed; ``spans_unconfirmed``:
the batch still inside the exporter when the shutdown timeout expired). ``sweep_failures`` counts failed idle
sweeps, which lose no span.

Counter names are flat, dotted strings. Internal errors are counted as ``internal_errors`` (the total) and
``internal_errors.<site>`` (per site), where a *site* names the place that failed (``serialize``, ``redact``,
``processor.on_start``...).

The package attribute ``galtea_otel.stats`` is :data:`counters`, a callable view of this module: both
``galtea_otel.stats()`` and ``from galtea_otel import stats; stats.incr(...)`` work, as does
``from galtea_otel.stats import incr``.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["Counters", "counters", "incr", "internal_error", "reset", "snapshot"]

logger = logging.getLogger("galtea_otel")

_lock = threading.Lock()
_counters: dict[str, int] = {}
_logged_sites: set[str] = set()


def _reinit_after_fork() -> None:  # a forked child must not inherit a lock held by another parent thread
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def incr(name: str, n: int = 1) -> None:
    """Add ``n`` to the counter ``name`` (created at 0)."""
    with _lock:
        _counters[name] = _counters.get(name, 0) + n


def snapshot() -> dict[str, int]:
    """A copy of every counter, sorted by name."""
    with _lock:
        return dict(sorted(_counters.items()))


def reset() -> None:
    """Zero every counter and forget which sites were already logged (for tests)."""
    with _lock:
        _counters.clear()
        _logged_sites.clear()


def internal_error(site: str, exc: BaseException | None = None, message: str = "") -> None:
    """Count a failure inside galtea-otel at ``site``; log it the first time that site fails.

    Never raises: it is what the code calls from its ``except`` blocks.
    """
    try:
        with _lock:
            _counters["internal_errors"] = _counters.get("internal_errors", 0) + 1
            key = "internal_errors." + site
            _counters[key] = _counters.get(key, 0) + 1
            first = site not in _logged_sites
            _logged_sites.add(site)
        if first:
            logger.warning(
                "galtea-otel: internal error at %s%s (logged once per site; counted in galtea_otel.stats())",
                site,
                f": {message}" if message else "",
                exc_info=exc,
            )
    except Exception:  # pragma: no cover - logging itself failed; nothing safer to do
        pass


class Counters:
    """``galtea_otel.stats``: call it for a :func:`snapshot`; it also carries this module's functions."""

    incr = staticmethod(incr)
    snapshot = staticmethod(snapshot)
    reset = staticmethod(reset)
    internal_error = staticmethod(internal_error)

    def __call__(self) -> dict[str, int]:
        """galtea-otel's own counters: spans started in sessions, truncations, redaction failures, internal
        errors (``internal_errors`` and ``internal_errors.<site>``), and the exporter's (spans exported,
        export failures, dropped spans)."""
        return snapshot()

    def __repr__(self) -> str:
        return f"galtea_otel.stats({snapshot()!r})"


counters = Counters()
