"""``galtea-otel serve``: the OTLP receiver as a click command (attached to the ``galtea-otel`` group)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import click

from galtea_otel.serve.options import (
    DEFAULT_ASSEMBLE_SPANS,
    DEFAULT_ASSEMBLER_IDLE_EXIT,
    DEFAULT_GRPC,
    DEFAULT_HTTP,
    DEFAULT_INBOX_SPANS,
    DEFAULT_MAX_BODY_BYTES,
)


@click.command(
    "serve",
    help="Run the OTLP receiver: OTLP/HTTP and OTLP/gRPC traces in, session records in the store. "
    "Listens on 127.0.0.1 only unless told otherwise; a public address needs --token-file.",
)
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    envvar="GALTEA_OTEL_STORE",
    default=None,
    help="Store URL (default: the galtea-otel --store, $GALTEA_OTEL_STORE, else ./galtea_sessions.db).",
)
@click.option(
    "--http",
    "http",
    metavar="HOST:PORT",
    default=DEFAULT_HTTP,
    show_default=True,
    help="OTLP/HTTP address (POST /v1/traces), or 'off'.",
)
@click.option(
    "--grpc",
    "grpc_",
    metavar="HOST:PORT",
    default=DEFAULT_GRPC,
    show_default=True,
    help="OTLP/gRPC address, or 'off'.",
)
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="File holding the bearer token every request must present (Authorization: Bearer ...).",
)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help='Projects: a JSON file {"project": ["token", ...]}; each token writes only its project\'s sessions '
         "(with --token-file, that token is the default project's). Re-read on SIGHUP.",
)
@click.option(
    "--allow-insecure-public",
    is_flag=True,
    help="Allow a non-loopback address without a token (logged as a warning).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BODY_BYTES,
    show_default=True,
    help="Largest request body, measured after decompression (413 above).",
)
@click.option(
    "--max-inflight",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Requests ingested at once per protocol; more wait briefly, then get 503 + Retry-After.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds a connection has to send complete request headers (OTLP/HTTP; gRPC: the HTTP/2 handshake).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Window over which a request body must arrive at --body-min-rate (408 below it); gRPC: the time a "
    "call's message has to arrive.",
)
@click.option(
    "--body-min-rate",
    type=click.IntRange(min=0),
    default=1024,
    show_default=True,
    help="Bytes per second a request body must keep arriving at.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Open connections per protocol; on OTLP/HTTP the oldest idle or header-incomplete one makes room.",
)
@click.option(
    "--max-connections-per-client",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Open OTLP/HTTP connections per client address (the oldest idle one makes room).",
)
@click.option(
    "--default-version", metavar="V", default=None, help="Version of sessions whose spans name none."
)
@click.option(
    "--idle-close",
    "idle_close",
    metavar="MINUTES",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Close sessions idle this long as COMPLETED [default: 30].",
)
@click.option(
    "--turns",
    type=click.Choice(["user", "llm-call", "trace"]),
    default=None,
    help="One turn per user message (the outermost agent, chain or LLM span), per outermost LLM call, or per "
    "trace [default: user].",
)
@click.option(
    "--hold-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="How long spans wait for their trace's session key [default: 300].",
)
@click.option(
    "--galtea-sync",
    is_flag=True,
    help="Also send the sessions to the Galtea platform, from a durable outbox in the store (needs "
    "pip install 'galtea-otel[galtea]'; configured by GALTEA_API_KEY or GALTEA_API_KEY_FILE, GALTEA_API_URL, "
    "GALTEA_PRODUCT_ID / GALTEA_VERSION_MAP).",
)
@click.option(
    "--redact-secrets",
    is_flag=True,
    envvar="GALTEA_OTEL_REDACT_SECRETS",
    help="Mask common secrets (API keys, bearer tokens, JWTs, card numbers, e-mail addresses) in what is "
    "stored, for telemetry that arrives unmasked [env: GALTEA_OTEL_REDACT_SECRETS].",
)
@click.option(
    "--assemble",
    type=click.Choice(["auto", "inline", "deferred"]),
    default="auto",
    show_default=True,
    help="deferred: answer a request once its rows are committed to the store's inbox (<store>.inbox, as "
    "durable as the store) and let a second process assemble them in large batches: several times the "
    "acknowledged rate on a busy receiver, records a moment behind (SQLite stores). inline: answer once its "
    "records are assembled in the store (read-your-writes; one core). auto: deferred on a SQLite store, "
    "inline on PostgreSQL (which scales by running more receivers).",
)
@click.option(
    "--assemble-batch-spans",
    type=click.IntRange(min=1),
    default=DEFAULT_ASSEMBLE_SPANS,
    show_default=True,
    help="With --assemble deferred: the most spans assembled in one transaction (larger: cheaper per span, "
    "more memory in the assembler process).",
)
@click.option(
    "--inbox-max-spans",
    type=click.IntRange(min=1),
    default=DEFAULT_INBOX_SPANS,
    show_default=True,
    help="With --assemble deferred: past this many spans waiting to be assembled, answer 503 (clients retry).",
)
@click.option(
    "--assembler-idle-exit",
    metavar="SECONDS",
    type=click.FloatRange(min=0),
    default=DEFAULT_ASSEMBLER_IDLE_EXIT,
    show_default=True,
    help="With deferred assembly: the assembler process exits after this long with nothing to assemble and no "
    "sweep due as soon; the next request, or the next idle close, starts it again (0: it stays).",
)
@click.option(
    "--evaluators",
    "evaluators_spec",
    metavar="MODULE:ATTR",
    multiple=True,
    help="Evaluators to run once each session ends: an importable callable, Evaluator or list of them "
    "(e.g. myapp.evals:EVALUATORS); repeatable.",
)
@click.option(
    "--ui",
    "ui",
    is_flag=True,
    help="Also serve the web UI (galtea-otel ui) from this process, on --ui-host:--ui-port; a --token-file "
    "guards it too.",
)
@click.option("--ui-host", default="127.0.0.1", show_default=True, help="The UI's address (with --ui).")
@click.option(
    "--ui-port", type=click.IntRange(min=0, max=65535), default=7007, show_default=True,
    help="The UI's port (with --ui; 0: a free one).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    store_url: str | None,
    http: str,
    grpc_: str,
    token_file: str | None,
    tokens_file: str | None,
    allow_insecure_public: bool,
    max_body_bytes: int,
    max_inflight: int,
    header_timeout: float,
    body_timeout: float,
    body_min_rate: int,
    max_connections: int,
    max_connections_per_client: int,
    default_version: str | None,
    idle_close: float | None,
    turns: str | None,
    hold_seconds: float | None,
    galtea_sync: bool,
    redact_secrets: bool,
    ui: bool,
    ui_host: str,
    ui_port: int,
    evaluators_spec: tuple[str, ...] = (),
    assemble: str = "auto",
    assemble_batch_spans: int = DEFAULT_ASSEMBLE_SPANS,
    inbox_max_spans: int = DEFAULT_INBOX_SPANS,
    assembler_idle_exit: float = DEFAULT_ASSEMBLER_IDLE_EXIT,
) -> None:
    import dataclasses

    from galtea_otel.serve.options import ConfigError, ServeOptions, load_token, parse_address
    from galtea_otel.serve.server import run_server
    from galtea_otel.settings import PipelineSettings

    overrides: dict[str, object] = {}
    if default_version is not None:
        overrides["default_version"] = default_version
    if idle_close is not None:
        overrides["idle_close_minutes"] = idle_close
    if turns is not None:
        overrides["turns"] = turns
    if hold_seconds is not None:
        overrides["hold_seconds"] = hold_seconds
    if store_url is None:  # the group's --store, if it has one
        store_url = getattr(ctx.find_root().obj, "store_url", None)
    try:
        options = ServeOptions(
            store_url=store_url,
            http=parse_address(http),
            grpc=parse_address(grpc_),
            token=load_token(token_file) if token_file else None,
            tokens_file=tokens_file,
            allow_insecure_public=allow_insecure_public,
            max_body_bytes=max_body_bytes,
            max_inflight=max_inflight,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            body_min_rate=body_min_rate,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            settings=dataclasses.replace(PipelineSettings(), **overrides),  # type: ignore[arg-type]
            redact_secrets=redact_secrets,
            assemble=assemble,
            assemble_batch_spans=assemble_batch_spans,
            inbox_max_spans=inbox_max_spans,
            assembler_idle_exit=assembler_idle_exit,
        )
        options.check()
        if tokens_file:
            from galtea_otel.serve.projects import Tokens

            Tokens(options.token, tokens_file)  # a bad file is a usage error now, not a failed start
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    galtea = None
    if galtea_sync:
        try:
            from galtea_otel.sync.config import GalteaSyncConfig, SyncConfigError
        except ImportError as exc:  # pragma: no cover - the extra is not installed
            raise click.ClickException(f"--galtea-sync needs pip install 'galtea-otel[galtea]' ({exc})") from None
        try:
            galtea = GalteaSyncConfig.from_env()
        except SyncConfigError as exc:
            raise click.UsageError(f"--galtea-sync: {exc}") from None
    runner = None
    if evaluators_spec:  # issue 11
        from galtea_otel.evaluate.runner import EvaluationRunner, load_evaluators

        try:
            runner = EvaluationRunner(load_evaluators(evaluators_spec))
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise click.UsageError(f"--evaluators: {exc}") from None
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with _ui(ui, options.store_url, ui_host, ui_port, options.token):
        try:
            run_server(options, galtea=galtea, evaluators=runner)
        except OSError as exc:  # typically: the address is already in use
            raise click.ClickException(f"cannot start the receiver: {exc}") from None


@contextlib.contextmanager
def _ui(enabled: bool, store_url: str | None, host: str, port: int, token: str | None) -> Iterator[None]:
    """With ``--ui``: the web UI on its own store connection, served from a thread for the receiver's life."""
    if not enabled:
        yield
        return
    from galtea_otel.store import open_store
    from galtea_otel.ui.server import UIError, check_bind, serving_in_thread

    try:
        check_bind(host, token)
    except UIError as exc:
        raise click.UsageError(f"--ui: {exc}") from None
    store = open_store(store_url)
    try:
        with serving_in_thread(store, host, port, token=token) as server:
            logging.getLogger("galtea_otel.ui").info("web UI on %s", server.url)
            click.echo(f"galtea-otel UI on {server.url}", err=True)
            yield
    except OSError as exc:
        raise click.ClickException(f"cannot start the UI on {host}:{port}: {exc}") from None
    finally:
        store.close()
