"""``configure()``, ``flush()``, ``shutdown()``: wiring galtea-otel into the application's OpenTelemetry SDK.

The instrumentation reads one immutable :class:`Config` (``current()``); ``configure()`` replaces it as a
whole. Before any ``configure()``, spans go to the global tracer provider (whatever the application sets up,
possibly none) with no stamping and no export, and content capture follows the environment.

Environment variables (a ``configure()`` argument wins over its variable):

- ``GALTEA_OTEL_CAPTURE_CONTENT``: ``false`` / ``0`` / ``no`` / ``off`` stops capturing inputs and outputs.
- ``GALTEA_OTEL_MAX_VALUE_BYTES``: the size limit of one captured value (default 65536).
- ``GALTEA_OTEL_STORE``: the store the default exporter writes to (read by the exporter).
- ``GALTEA_OTEL_REDACT_SECRETS``: ``true`` / ``1`` / ``yes`` / ``on`` masks common secrets (see
  :mod:`galtea_otel.redact`) in everything galtea-otel records.
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

from galtea_otel.instrument.processor import (
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    BatchExport,
    GalteaSpanProcessor,
)
from galtea_otel.stats import incr, internal_error
from galtea_otel.version import VERSION

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from galtea_otel.settings import PipelineSettings
    from galtea_otel.store.base import Store
    from galtea_otel.sync.config import GalteaSyncConfig

__all__ = ["VERSION", "Config", "configure", "current", "flush", "shutdown"]

TRACER_NAME = "galtea_otel"
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
MIN_MAX_VALUE_BYTES = 256
EXIT_TIMEOUT_S = 4.0  # the most shutdown() (and so the interpreter's exit) waits for the export of queued spans
_MARGIN_S = 0.5  # _bounded() waits this much beyond a flush / shutdown that bounds itself: it answers first
ENV_BSP_MAX_QUEUE_SIZE = "OTEL_BSP_MAX_QUEUE_SIZE"  # the SDK's BatchSpanProcessor variables, honoured by ours
ENV_BSP_MAX_EXPORT_BATCH_SIZE = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
ENV_MAX_QUEUE_BYTES = "GALTEA_OTEL_MAX_QUEUE_BYTES"

ENV_CAPTURE_CONTENT = "GALTEA_OTEL_CAPTURE_CONTENT"
ENV_MAX_VALUE_BYTES = "GALTEA_OTEL_MAX_VALUE_BYTES"
ENV_REDACT_SECRETS = "GALTEA_OTEL_REDACT_SECRETS"

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
    redact_secrets: bool = False  # the built-in maskers are part of ``redact`` (chained before the user's hook)

    @property
    def configured(self) -> bool:
        return self.provider is not None


def _env_capture() -> bool:
    raw = os.environ.get(ENV_CAPTURE_CONTENT, "").strip().lower()
    return raw not in ("false", "0", "no", "off")


def _env_redact_secrets() -> bool:
    raw = os.environ.get(ENV_REDACT_SECRETS, "").strip().lower()
    return raw in ("true", "1", "yes", "on")


def _check_store_url(store: object) -> None:
    """Refuse, at ``configure()`` time, a store the export thread could never open: a wrong URL scheme, a missing
    folder, a file that is not SQLite. (A foreign or newer SQLite file is found when the export thread opens
    the store: it logs one error and counts the lost spans in ``galtea_otel.stats()``.)"""
    from galtea_otel.store import SCHEMES, default_store_url

    if store is None:
        store = default_store_url()
    elif not isinstance(store, str):
        if not hasattr(store, "transaction"):
            raise TypeError(f"configure(store=...) must be a store URL or a Store, not {type(store).__name__}")
        return
    scheme, sep, _ = store.partition("://")
    if sep and scheme not in SCHEMES:
        raise ValueError(f"configure(store={store!r}): unknown store URL scheme {scheme!r}; use one of "
                         f"{', '.join(s + '://' for s in SCHEMES)} (or a bare SQLite file path)")
    if sep and scheme != "sqlite":
        return
    from galtea_otel.store.sqlite import path_from_url

    path = path_from_url(store.partition("?")[0])
    if not path.parent.is_dir():
        raise ValueError(f"configure(store={store!r}): the folder {path.parent} does not exist")
    try:
        with path.open("rb") as file:
            header = file.read(16)
    except FileNotFoundError:
        return  # created on first export
    except OSError as exc:
        raise ValueError(f"configure(store={store!r}): cannot read {path}: {exc}") from None
    if header and header != b"SQLite format 3\x00":
        raise ValueError(f"configure(store={store!r}): {path} is not a SQLite database; give galtea-otel a file "
                         "of its own (or a new path)")


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
    redact_secrets: bool | None = None,
    max_value_bytes: int | None = None,
    test_cases: str | PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
    settings: PipelineSettings | None = None,
    schedule_delay_millis: int = 1000,
    max_queue_size: int | None = None,
    galtea: bool | GalteaSyncConfig | None = None,
    evaluators: Iterable[Any] | None = None,
    project: str | None = None,
) -> TracerProvider:
    """Attach galtea-otel to a TracerProvider and start exporting session records. Returns that provider.

    - Provider: ``tracer_provider`` if given, else the global one when it is an SDK provider; only when none
      is set globally does it create one and set it globally. It never replaces a provider.
    - It registers one span processor per provider (session stamping + a bounded export queue, see
      :class:`~galtea_otel.instrument.processor.BatchExport`). Calling it
      again is safe: the export part is swapped (the previous one is flushed and shut down), nothing is added
      twice. Each call sets the whole configuration: an argument left ``None`` takes its environment value
      or default.
    - Export: ``exporter`` (any OpenTelemetry ``SpanExporter``) if given; else galtea-otel's session exporter
      writing to ``store`` (a store URL or object; ``None``: ``$GALTEA_OTEL_STORE``, else
      ``sqlite:///./galtea_sessions.db``) with the pipeline ``settings``. The store is opened in the export
      thread.
    - ``capture_content=False`` stops capturing inputs and outputs everywhere; ``redact`` is applied to every
      captured JSON text (inputs, outputs, session metadata) before it is set on a span, and to the plain texts
      galtea-otel records (error messages and exception events, the session context); ``max_value_bytes``
      limits one captured value (truncated into valid JSON beyond it).
    - ``redact_secrets=True`` (default ``$GALTEA_OTEL_REDACT_SECRETS``) masks common secrets (API keys, bearer
      tokens, JWTs, credentials, card numbers, e-mail addresses, PEM private keys:
      :func:`galtea_otel.redact.secrets`) in all of these, before ``redact``, and in the default exporter before
      storage, in every text field of every span row (span names, model, session key, user id, error texts,
      context, metadata, inputs, outputs, messages: so spans of other instrumentations are masked too). A mask is
      stable (``[REDACTED:<kind>#<keyed hash>]``, key ``$GALTEA_OTEL_REDACT_KEY``), so a masked user id still
      groups its sessions.
    - ``store``: a URL with an unknown scheme, a missing folder or a file that is not SQLite raises
      ``ValueError`` here; a store that fails later (a foreign SQLite file, a database down) fails in the export
      thread: one error is logged and the lost spans are counted (``galtea_otel.stats()["spans_lost"]``).
    - ``test_cases``: registered as by ``register_test_cases()``.
    - ``galtea``: also send the sessions to the Galtea platform (``pip install 'galtea-otel[galtea]'``):
      ``True`` configures it from the environment (``GALTEA_API_KEY`` or ``GALTEA_API_KEY_FILE``,
      ``GALTEA_API_URL``, ``GALTEA_PRODUCT_ID`` / ``GALTEA_VERSION_MAP``), or pass a
      ``galtea_otel.sync.config.GalteaSyncConfig``. Sessions go through a durable outbox in the store, written in
      the same transaction as the records; a background thread sends them (never the application's thread).
    - ``max_queue_size`` (default ``$OTEL_BSP_MAX_QUEUE_SIZE``, else 8192): spans waiting for export, and at most
      ``$GALTEA_OTEL_MAX_QUEUE_BYTES`` (else 32 MiB) of their string values; when full, further spans are
      dropped and counted (``galtea_otel.stats()["spans_dropped"]``, a warning at most every 10 s). Spans are
      exported every ``schedule_delay_millis`` or as soon as a batch (``$OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, else
      4096 into the store, 512 to another ``exporter``) is full, on one background thread.
    - ``evaluators``: callables (or ``galtea_otel.evaluate.Evaluator``) run once each session ends (COMPLETED /
      FAILED), on background threads, with the session's full record; their evaluations are stored with it
      (README, "Evaluators"). ``shutdown()`` runs those due within its timeout.
    - ``project`` (issue 12): the project this application's sessions are stored under (default ``"default"``),
      as ``galtea-otel serve --tokens`` does by token: a session is (project, custom id, version).
    """
    global _config, _atexit_registered
    if exporter is not None and (store is not None or settings is not None):
        raise ValueError("configure(): pass either exporter= or store= / settings= (default exporter)")
    sync_config = None
    if galtea:
        if exporter is not None:
            raise ValueError("configure(): galtea= needs the default exporter (it sends what the store holds)")
        from galtea_otel.sync.config import GalteaSyncConfig

        sync_config = galtea if isinstance(galtea, GalteaSyncConfig) else GalteaSyncConfig.from_env()
    runner = None
    if evaluators is not None:  # issue 11
        if exporter is not None:
            raise ValueError("configure(): evaluators= needs the default exporter (they read the store)")
        from galtea_otel.evaluate.runner import EvaluationRunner

        runner = EvaluationRunner(evaluators)
    if redact is not None and not callable(redact):
        raise TypeError("configure(redact=...) must be a callable taking and returning a str")
    if redact_secrets is not None and not isinstance(redact_secrets, bool):
        raise TypeError(f"configure(redact_secrets=...) must be True or False, not {redact_secrets!r}")
    if project is not None:
        from galtea_otel.serve.projects import PROJECT_NAME

        if exporter is not None:
            raise ValueError("configure(): project= needs the default exporter (a receiver's token decides it)")
        if not isinstance(project, str) or not PROJECT_NAME.match(project):
            raise ValueError(f"configure(project=...): {project!r} is not a project name (letters, digits, '.', '_',"
                             " '-'; 1-100 characters)")
    if capture_content is not None and not isinstance(capture_content, bool):
        raise TypeError(f"configure(capture_content=...) must be True or False, not {capture_content!r}")
    if exporter is None:
        _check_store_url(store)
    mask_secrets = _env_redact_secrets() if redact_secrets is None else redact_secrets
    builtin = None
    if mask_secrets:
        from galtea_otel.redact import chain, secrets

        builtin = secrets()
        redact = chain(builtin, redact)
    if max_value_bytes is not None and (
        isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int)
        or max_value_bytes < MIN_MAX_VALUE_BYTES
    ):
        raise ValueError(f"configure(max_value_bytes=...) must be an integer >= {MIN_MAX_VALUE_BYTES}")
    if max_queue_size is not None and (
        isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int) or max_queue_size < 1
    ):
        raise ValueError("configure(max_queue_size=...) must be a positive integer")
    if test_cases is not None:
        from galtea_otel.instrument.testcases import register_test_cases

        register_test_cases(test_cases)

    with _lock:
        provider = _resolve_provider(tracer_provider)
        if exporter is None and sync_config is not None:
            from galtea_otel.sync.exporter import SyncingSessionExporter

            exporter = SyncingSessionExporter(store=store, settings=settings, galtea=sync_config, redact=builtin,
                                              project=project)
        elif exporter is None:
            from galtea_otel.export.exporter import SessionExporter

            exporter = SessionExporter(store=store, settings=settings, redact=builtin, project=project)
        if runner is not None:
            exporter.evaluators = runner  # type: ignore[attr-defined]
        previous = _config.provider
        if previous is not None and previous is not provider and previous in _processors:
            _bounded(_processors[previous].shutdown, EXIT_TIMEOUT_S + _MARGIN_S, "configure.detach_previous")
        processor = _processors.get(provider)
        if processor is None:
            export = _export_processor(exporter, schedule_delay_millis, max_queue_size)
            processor = GalteaSpanProcessor(export, exporter)
            provider.add_span_processor(processor)
            _processors[provider] = processor
        elif processor.exporter is not exporter or processor.export is None:
            export = _export_processor(exporter, schedule_delay_millis, max_queue_size)
            old = processor.swap_export(export, exporter)
            if old is not None:  # shutting it down flushes it and shuts its exporter down
                _bounded(old.shutdown, EXIT_TIMEOUT_S + _MARGIN_S, "configure.replace_export")
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
            redact_secrets=mask_secrets,
        )
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
    return cast("TracerProvider", provider)


def _env_positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        logger.warning("galtea-otel: ignoring %s=%r (a positive integer)", name, raw)
        return default
    return value


def _export_processor(exporter: SpanExporter, schedule_delay_millis: int, max_queue_size: int | None) -> BatchExport:
    queue = max_queue_size if max_queue_size is not None else _env_positive_int(
        ENV_BSP_MAX_QUEUE_SIZE, DEFAULT_MAX_QUEUE_SIZE)
    return BatchExport(
        exporter,
        max_queue_size=queue,
        max_queue_bytes=_env_positive_int(ENV_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_BYTES),
        # An exporter may ask for bigger batches (the session exporter: its cost per span falls with the batch,
        # each session a batch touches costs about once); the SDK's variable, when set, still wins.
        max_export_batch_size=_env_positive_int(
            ENV_BSP_MAX_EXPORT_BATCH_SIZE, getattr(exporter, "export_batch_size", DEFAULT_MAX_EXPORT_BATCH_SIZE)),
        schedule_delay_millis=schedule_delay_millis,
        shutdown_timeout_s=EXIT_TIMEOUT_S,
    )


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
    return _bounded(lambda: processor.force_flush(int(timeout_s * 1000)), timeout_s + _MARGIN_S, "flush")


def shutdown(timeout_s: float = EXIT_TIMEOUT_S) -> bool:
    """Flush and stop exporting (at most ``timeout_s``; spans still queued then are dropped and counted, and
    the exporter is shut down, which stops its retries). The application's TracerProvider is left running;
    spans are still stamped, and a later ``configure()`` starts exporting again. At exit it runs with
    ``EXIT_TIMEOUT_S``."""
    processor = _active_processor()
    if processor is None:
        return True
    export = processor.swap_export(None)
    if export is None:
        return True

    def stop() -> bool:
        if isinstance(export, BatchExport):  # bounds itself, and interrupts the exporter when out of time
            return export.shutdown(timeout_s)
        flushed = bool(export.force_flush(int(timeout_s * 1000)))
        export.shutdown()
        return flushed

    return _bounded(stop, timeout_s + _MARGIN_S, "shutdown")


def _at_exit() -> None:
    with contextlib.suppress(Exception):  # never fail the interpreter's exit
        shutdown(EXIT_TIMEOUT_S)

