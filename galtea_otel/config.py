"""``configure()``, ``flush()``, ``shutdown()``: wiring galtea-otel into the application's OpenTelemetry SDK.

The instrumentation reads one immutable :class:`Config` (``current()``); ``configure()`` replaces it as a
whole. Before any ``configure()``, spans go to the global tracer provider (whatever the application sets up,
possibly none) with no stamping and no export, and content capture follows the environment.

Environment variables (a ``configure()`` argument wins over its variable):

- ``GALTEA_OTEL_CAPTURE_CONTENT``: ``false`` / ``0`` / ``no`` / ``off`` stops capturing inputs and outputs.
- ``GALTEA_OTEL_MAX_VALUE_BYTES``: the size limit of one captured value (default 65536).
- ``GALTEA_OTEL_STORE``: the store the default exporter writes to (read by the exporter).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import trace

from galtea_otel.instrument.processor import GalteaSpanProcessor
from galtea_otel.stats import incr, internal_error

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from galtea_otel.settings import PipelineSettings
    from galtea_otel.store.base import Store

__all__ = ["VERSION", "Config", "configure", "current", "flush", "shutdown"]

VERSION = "0.1.0"
TRACER_NAME = "galtea_otel"
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
MIN_MAX_VALUE_BYTES = 256
EXIT_TIMEOUT_S = 5.0

ENV_CAPTURE_CONTENT = "GALTEA_OTEL_CAPTURE_CONTENT"
ENV_MAX_VALUE_BYTES = "GALTEA_OTEL_MAX_VALUE_BYTES"

Redactor = Callable[[str], str]
logger = logging.getLogger("galtea_otel")


@dataclass(frozen=True)
class Config:
    """What the instrumentation needs on its hot path; replaced as a whole by ``configure()``."""

    tracer: trace.Tracer
    capture_content: bool = True
    redact: Redactor | None = None
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    provider: Any = None  # the SDK TracerProvider configure() attached to; None before configure()

    @property
    def configured(self) -> bool:
        return self.provider is not None


def _env_capture() -> bool:
    raw = os.environ.get(ENV_CAPTURE_CONTENT, "").strip().lower()
    return raw not in ("false", "0", "no", "off")


def _env_max_bytes() -> int:
    raw = os.environ.get(ENV_MAX_VALUE_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_VALUE_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < MIN_MAX_VALUE_BYTES:
        logger.warning("galtea-otel: ignoring %s=%r (an integer >= %d)", ENV_MAX_VALUE_BYTES, raw,
                       MIN_MAX_VALUE_BYTES)
        return DEFAULT_MAX_VALUE_BYTES
    return value


_config = Config(
    tracer=trace.get_tracer(TRACER_NAME, VERSION),
    capture_content=_env_capture(),
    max_value_bytes=_env_max_bytes(),
)
_lock = threading.RLock()
_processors: weakref.WeakKeyDictionary[Any, GalteaSpanProcessor] = weakref.WeakKeyDictionary()
_atexit_registered = False


def current() -> Config:
    """The configuration in force."""
    return _config


def configure(
    store: str | Store | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    exporter: SpanExporter | None = None,
    capture_content: bool | None = None,
    redact: Redactor | None = None,
    max_value_bytes: int | None = None,
    test_cases: str | PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
    settings: PipelineSettings | None = None,
    schedule_delay_millis: int = 1000,
) -> TracerProvider:
    """Attach galtea-otel to a TracerProvider and start exporting session records. Returns that provider.

    - Provider: ``tracer_provider`` if given, else the global one when it is an SDK provider; only when none
      is set globally does it create one and set it globally. It never replaces a provider.
    - It registers one span processor per provider (session stamping + a ``BatchSpanProcessor``). Calling it
      again is safe: the export part is swapped (the previous one is flushed and shut down), nothing is added
      twice. Each call sets the whole configuration: an argument left ``None`` takes its environment value
      or default.
    - Export: ``exporter`` (any OpenTelemetry ``SpanExporter``) if given; else galtea-otel's session exporter
      writing to ``store`` (a store URL or object; ``None``: ``$GALTEA_OTEL_STORE``, else
      ``sqlite:///./galtea_sessions.db``) with the pipeline ``settings``. The store is opened in the export
      thread.
    - ``capture_content=False`` stops capturing inputs and outputs everywhere; ``redact`` is applied to every
      captured JSON text (inputs, outputs, session metadata) before it is set on a span; ``max_value_bytes``
      limits one captured value (truncated into valid JSON beyond it).
    - ``test_cases``: registered as by ``register_test_cases()``.
    """
    global _config, _atexit_registered
    if exporter is not None and (store is not None or settings is not None):
        raise ValueError("configure(): pass either exporter= or store= / settings= (default exporter)")
    if redact is not None and not callable(redact):
        raise TypeError("configure(redact=...) must be a callable taking and returning a str")
    if max_value_bytes is not None and (
        isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int)
        or max_value_bytes < MIN_MAX_VALUE_BYTES
    ):
        raise ValueError(f"configure(max_value_bytes=...) must be an integer >= {MIN_MAX_VALUE_BYTES}")
    if test_cases is not None:
        from galtea_otel.instrument.testcases import register_test_cases

        register_test_cases(test_cases)

    with _lock:
        provider = _resolve_provider(tracer_provider)
        if exporter is None:
            from galtea_otel.export.exporter import SessionExporter

            exporter = SessionExporter(store=store, settings=settings)
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        previous = _config.provider
        if previous is not None and previous is not provider and previous in _processors:
            _bounded(_processors[previous].shutdown, EXIT_TIMEOUT_S, "configure.detach_previous")
        processor = _processors.get(provider)
        if processor is None:
            export = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_millis)
            processor = GalteaSpanProcessor(export, exporter)
            provider.add_span_processor(processor)
            _processors[provider] = processor
        elif processor.exporter is not exporter or processor.export is None:
            export = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_millis)
            old = processor.swap_export(export, exporter)
            if old is not None:  # shutting it down flushes it and shuts its exporter down
                _bounded(old.shutdown, EXIT_TIMEOUT_S, "configure.replace_export")
        # else: the same exporter again: keep its running export processor

        limit = max_value_bytes if max_value_bytes is not None else _env_max_bytes()
        sdk_limit = _sdk_value_length_limit(provider)
        if sdk_limit is not None and sdk_limit < limit:
            limit = max(sdk_limit, MIN_MAX_VALUE_BYTES)  # SDK cuts by characters; bytes >= characters
        _config = Config(
            tracer=provider.get_tracer(TRACER_NAME, VERSION),
            capture_content=_env_capture() if capture_content is None else bool(capture_content),
            redact=redact,
            max_value_bytes=limit,
            provider=provider,
        )
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
    return cast("TracerProvider", provider)


def _resolve_provider(given: Any) -> Any:
    if given is not None:
        if not hasattr(given, "add_span_processor") or not hasattr(given, "get_tracer"):
            raise TypeError("configure(tracer_provider=...) needs an OpenTelemetry SDK TracerProvider")
        return given
    global_provider = trace.get_tracer_provider()
    if hasattr(global_provider, "add_span_processor"):
        return global_provider
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(global_provider, trace.ProxyTracerProvider):  # nothing set yet: create and set ours
        created = TracerProvider()
        trace.set_tracer_provider(created)
        now_global = trace.get_tracer_provider()
        return now_global if hasattr(now_global, "add_span_processor") else created
    logger.warning(
        "galtea-otel: the global tracer provider (%s) is not an SDK TracerProvider; recording galtea-otel's "
        "own spans on a private provider (pass tracer_provider= to choose)", type(global_provider).__name__,
    )
    return TracerProvider()


def _sdk_value_length_limit(provider: Any) -> int | None:
    limits = getattr(provider, "_span_limits", None)
    value = getattr(limits, "max_attribute_length", None)
    return value if isinstance(value, int) and value > 0 else None


def _bounded(fn: Callable[[], Any], timeout_s: float, site: str) -> bool:
    """Run ``fn`` on a helper thread, waiting at most ``timeout_s``. True if it finished in time, well."""
    outcome: list[bool] = []

    def run() -> None:
        try:
            result = fn()
            outcome.append(result is not False)
        except Exception as exc:
            internal_error(site, exc)
            outcome.append(False)

    try:
        worker = threading.Thread(target=run, name=f"galtea-otel-{site}", daemon=True)
        worker.start()
    except RuntimeError:  # no new threads at interpreter shutdown (3.12+): run inline
        run()
        return bool(outcome and outcome[0])
    worker.join(timeout_s)
    if worker.is_alive():
        incr("timeouts." + site)
        logger.warning("galtea-otel: %s did not finish within %.1f s", site, timeout_s)
        return False
    return bool(outcome and outcome[0])


def _active_processor() -> GalteaSpanProcessor | None:
    provider = _config.provider
    return None if provider is None else _processors.get(provider)


def flush(timeout_s: float = 5.0) -> bool:
    """Export every span ended so far (blocking, at most ``timeout_s``). True when all went out in time."""
    processor = _active_processor()
    if processor is None:
        return True
    return _bounded(lambda: processor.force_flush(int(timeout_s * 1000)), timeout_s, "flush")


def shutdown(timeout_s: float = EXIT_TIMEOUT_S) -> bool:
    """Flush and stop exporting (at most ``timeout_s``). The application's TracerProvider is left running;
    spans are still stamped, and a later ``configure()`` starts exporting again."""
    processor = _active_processor()
    if processor is None:
        return True
    export = processor.swap_export(None)
    if export is None:
        return True

    def stop() -> bool:
        flushed = bool(export.force_flush(int(timeout_s * 1000)))
        export.shutdown()
        return flushed

    return _bounded(stop, timeout_s, "shutdown")


def _at_exit() -> None:
    with contextlib.suppress(Exception):  # never fail the interpreter's exit
        shutdown(EXIT_TIMEOUT_S)

