"""``galtea-otel``: read session records from a store, load test cases, run the demo, start the receiver.

Every command works on one store, ``--store URL`` (default ``$GALTEA_OTEL_STORE``, else
``sqlite:///galtea_sessions.db``). Human output is an aligned table (status colored on a terminal);
``--json`` prints the records themselves (``model_dump(mode="json")`` of ``galtea_otel.records``), a stable
format documented in the README. Errors print one line on stderr and exit with 1 (2 for a wrong command
line), never a traceback (set ``GALTEA_OTEL_DEBUG=1`` to see one). Imports are done inside the commands, so
``--help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from galtea_otel.cli.render import Renderer
    from galtea_otel.store import Store

__all__ = ["main"]

STATUSES = ("PENDING", "COMPLETED", "FAILED")
SERVE_HELP = "Run the OTLP receiver (needs: pip install 'galtea-otel[serve]')."


class CliError(click.ClickException):
    """A failure to report in one line on stderr (exit code 1)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@dataclass
class State:
    store_url: str


class RootGroup(click.Group):
    """The top-level group: errors become one-line messages; ``serve`` is attached lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "serve"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "serve" and "serve" not in self.commands:
            return _serve_command()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing ``serve`` must not import the receiver (and its optional dependencies).
        rows = []
        for name in self.list_commands(ctx):
            if name == "serve" and "serve" not in self.commands:
                rows.append((name, SERVE_HELP))
                continue
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from galtea_otel.store.base import StoreError

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except StoreError as exc:
            raise CliError(str(exc)) from exc
        except ImportError as exc:
            if ctx.invoked_subcommand == "serve":  # the receiver imports its optional dependencies late
                raise CliError(_serve_missing(exc)) from exc
            raise CliError(f"{_describe(exc)} (is galtea-otel fully installed?)") from exc
        except Exception as exc:
            if os.environ.get("GALTEA_OTEL_DEBUG"):
                raise
            raise CliError(f"{_describe(exc)} (set GALTEA_OTEL_DEBUG=1 for the traceback)") from exc


def _describe(exc: BaseException) -> str:
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        return f"the store could not be read: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _serve_command() -> click.Command:
    """The receiver's ``serve`` command, or a stand-in that explains how to get it."""
    try:
        from galtea_otel.serve.cli import serve
    except ImportError as exc:
        return _unavailable("serve", _serve_missing(exc))
    if not isinstance(serve, click.Command):  # pragma: no cover - a wrong object in the receiver module
        return _unavailable("serve", "galtea_otel.serve.cli.serve is not a click command")
    return serve


def _serve_missing(exc: ImportError) -> str:
    missing = exc.name or str(exc)
    if missing in ("galtea_otel.serve.cli", "galtea_otel.serve"):
        return "this galtea-otel has no receiver (galtea_otel.serve.cli is missing)"
    return (f"galtea-otel serve needs the receiver's dependencies (missing: {missing}): "
            "pip install 'galtea-otel[serve]'")


def _unavailable(name: str, message: str) -> click.Command:
    def fail(args: tuple[str, ...]) -> None:
        raise CliError(message)

    return click.Command(
        name, callback=fail, help=SERVE_HELP,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )


# --- helpers ------------------------------------------------------------------------------------------------


def _state(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None  # set by main()
    return state


def _open_store(ctx: click.Context, *, must_exist: bool) -> Store:
    """Open the store; for reading, refuse to create an empty SQLite file where there was none."""
    from galtea_otel.store import open_store

    url = _state(ctx).store_url
    if must_exist:
        scheme, sep, _ = url.partition("://")
        if not sep or scheme == "sqlite":
            from galtea_otel.store.sqlite import path_from_url

            path = path_from_url(url.partition("?")[0])
            if not path.exists():
                raise CliError(f"no store at {path} (run an instrumented app or `galtea-otel demo` first, "
                               "or point --store / GALTEA_OTEL_STORE at your store)")
    store = open_store(url)
    ctx.call_on_close(store.close)
    return store


def _renderer() -> Renderer:
    from galtea_otel.cli.render import Renderer

    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return Renderer(color=color)


def _store_flag(url: str) -> str:
    """`` --store URL`` when the store is not the default one, for a command line to copy."""
    import shlex

    from galtea_otel.store import default_store_url

    return "" if url == default_store_url() else f" --store {shlex.quote(url)}"


def _echo_lines(lines: Sequence[str]) -> None:
    click.echo("\n".join(lines))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


# --- commands -----------------------------------------------------------------------------------------------


@click.group(cls=RootGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--store", "store_url", metavar="URL", envvar="GALTEA_OTEL_STORE", default=None,
              help="The store: sqlite:///path.db, sqlite:////abs/path.db, a file path or postgresql://... "
                   "[env GALTEA_OTEL_STORE; default sqlite:///galtea_sessions.db]")
@click.version_option(package_name="galtea-otel", prog_name="galtea-otel", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, store_url: str | None) -> None:
    """galtea-otel: conversations with LLM applications, recorded as session records on OpenTelemetry."""
    from galtea_otel.store import default_store_url

    ctx.obj = State(store_url=store_url or default_store_url())


@main.group()
def sessions() -> None:
    """List and show recorded sessions."""


@sessions.command("list")
@click.option("--status", metavar="STATUS",
              help="Only sessions in this status: PENDING, COMPLETED, FAILED, idle-closed or reopened "
                   "(comma-separated for several).")
@click.option("--project", metavar="P", help="Only sessions of this project (serve --tokens; default: all).")
@click.option("--version", "version", metavar="V", help="Only sessions of this product version.")
@click.option("--user", metavar="ID", help="Only sessions of this end user.")
@click.option("--model", metavar="NAME", help="Only sessions with a turn on this model.")
@click.option("--since", metavar="WHEN",
              help="Started at or after: an ISO time (2026-12-01T10:00Z) or an age (2h, 7d).")
@click.option("--until", metavar="WHEN", help="Started before: an ISO time or an age.")
@click.option("--metadata", "metadata", metavar="KEY=VALUE", multiple=True,
              help="Only sessions whose metadata KEY has this value (repeat for several).")
@click.option("--has-error/--no-error", "has_error", default=None,
              help="Only sessions with (without) an error: a failed session, turn or span.")
@click.option("--production/--test", "production", default=None,
              help="Only production sessions (no test case) / only evaluation sessions.")
@click.option("--min-cost", type=float, metavar="USD", help="Only sessions that cost at least this much.")
@click.option("--max-cost", type=float, metavar="USD", help="Only sessions that cost at most this much.")
@click.option("--min-turns", type=int, metavar="N", help="Only sessions with at least N turns.")
@click.option("--max-turns", type=int, metavar="N", help="Only sessions with at most N turns.")
@click.option("-q", "--search", "search", metavar="TEXT",
              help="Only sessions whose messages or replies contain TEXT (case-insensitive).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most N sessions.")
@click.option("--eval", "evals", metavar="NAME<op>VALUE", multiple=True,
              help="Only sessions with a current evaluation (of the session or a turn) such as 'helpfulness<0.5' or"
                   " 'verdict=pass' (op: < <= > >= = !=); repeat to require several.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of Session objects.")
@click.pass_context
def sessions_list(
    ctx: click.Context, status: str | None, version: str | None, user: str | None, model: str | None,
    since: str | None, until: str | None, metadata: tuple[str, ...], has_error: bool | None,
    production: bool | None, min_cost: float | None, max_cost: float | None, min_turns: int | None,
    max_turns: int | None, search: str | None, limit: int, as_json: bool, evals: tuple[str, ...] = (),
    project: str | None = None,
) -> None:
    """Sessions, newest first (the same filters as the UI's, see `galtea-otel ui`)."""
    from dataclasses import replace

    from galtea_otel.evaluate.storage import parse_filter
    from galtea_otel.store.filters import FilterError, make_filter

    for expression in evals:
        try:
            parse_filter(expression)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--eval") from None

    try:
        make_filter(status=status)
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="'--status'") from None
    pairs = []
    for item in metadata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--metadata")
        pairs.append((key, value))
    try:
        flt = make_filter(project=project, status=status, version=version, user=user, model=model, since=since,
                          until=until, metadata=pairs, has_error=has_error, production=production, min_cost=min_cost,
                          max_cost=max_cost, min_turns=min_turns, max_turns=max_turns, q=search)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None
    if evals:
        flt = replace(flt, evaluations=evals)
    store = _open_store(ctx, must_exist=True)
    found: list[Any] = []
    after = None
    while True:  # a scanning filter looks at a bounded window per page: keep going until --limit or the end
        page = store.list_sessions(filter=flt, after=after, limit=limit - len(found))
        found.extend(page)
        after = page.next
        if after is None or len(found) >= limit:
            break
    if as_json:
        _echo_json([s.model_dump(mode="json") for s in found])
        return
    if not found:
        click.echo("No sessions" + (" matching the filters." if not flt.is_empty else " yet."))
    else:
        _echo_lines(_renderer().sessions_table(found))
    from galtea_otel.serve.peek import waiting_spans

    waiting = waiting_spans(store)
    if waiting:
        click.echo(f"note: {waiting} span(s) received by `serve --assemble deferred` are not assembled yet "
                   "(galtea-otel inbox)", err=True)


@sessions.command("show")
@click.argument("custom_id")
@click.option("--version", "version", metavar="V", help="The session's version (default: its newest).")
@click.option("--project", metavar="P", help="The session's project (serve --tokens; default: the newest of any).")
@click.option("--json", "as_json", is_flag=True, help="Print one SessionDetail object as JSON.")
@click.pass_context
def sessions_show(ctx: click.Context, custom_id: str, version: str | None, as_json: bool,
                  project: str | None = None) -> None:
    """One session: its header, then the conversation as a transcript (messages, tool calls, a footer per turn)."""
    from galtea_otel.pipeline import read_session

    store = _open_store(ctx, must_exist=True)
    key = store.find_session_key(custom_id, version, project)
    detail = read_session(store, key) if key is not None else None
    if detail is None:
        which = f"{custom_id!r}" + (f" with version {version!r}" if version else "") + (
            f" in project {project!r}" if project else "")
        raise CliError(f"no session {which} in {store.url} (see `galtea-otel sessions list`)")
    if as_json:
        _echo_json(detail.model_dump(mode="json"))
    else:
        _echo_lines(_renderer().session_detail(detail))


@main.command()
@click.argument("custom_id")
@click.option("--version", "version", metavar="V", help="The session's version (default: its newest).")
@click.option("--turn", type=click.IntRange(min=0), default=None, help="Score turn N (its index), not the session.")
@click.option("--name", required=True, help="What is scored (e.g. helpfulness).")
@click.option("--score", type=float, default=None, help="A number.")
@click.option("--label", default=None, help="A short text (e.g. pass, fail).")
@click.option("--note", default=None, help="Why: stored as the explanation.")
@click.option("--by", "author", default=None, help="Who annotates (default: $USER).")
@click.option("--project", metavar="P", help="The session's project (serve --tokens; default: the newest of any).")
@click.option("--json", "as_json", is_flag=True, help="Print the stored Evaluation as JSON.")
@click.pass_context
def annotate(ctx: click.Context, custom_id: str, version: str | None, turn: int | None, name: str,
             score: float | None, label: str | None, note: str | None, author: str | None, as_json: bool,
             project: str | None = None) -> None:
    """Record a person's evaluation of a session, or of one of its turns (source: human)."""
    import math

    from galtea_otel.evaluate.human import AnnotationError
    from galtea_otel.evaluate.human import annotate as store_annotation
    from galtea_otel.pipeline import read_session

    if (score is None) == (label is None):
        raise click.UsageError("give exactly one of --score and --label")
    if score is not None and not math.isfinite(score):
        raise click.BadParameter("must be a finite number", param_hint="--score")
    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="--name")
    store = _open_store(ctx, must_exist=True)
    key = store.find_session_key(custom_id, version, project)
    detail = read_session(store, key) if key is not None else None
    if key is None or detail is None:
        which = f"{custom_id!r}" + (f" with version {version!r}" if version else "") + (
            f" in project {project!r}" if project else "")
        raise CliError(f"no session {which} in {store.url} (see `galtea-otel sessions list`)")
    who = author or os.environ.get("USER") or "human"
    try:
        evaluation = store_annotation(store, key, detail, name=name, score=score, label=label, note=note,
                                      turn=turn, author=who)
    except AnnotationError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        _echo_json(evaluation.model_dump(mode="json"))
    else:
        click.echo(f"annotated {'turn ' + str(turn) if turn is not None else 'the session'} of {custom_id!r}:"
                   f" {evaluation.name} = {score if score is not None else label}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def reprice(ctx: click.Context, as_json: bool) -> None:
    """Recompute the stored costs of every session with the current prices.

    Turns with a reported cost keep it; the others are priced from $GALTEA_OTEL_PRICES, else the bundled price
    table (pip install 'galtea-otel[prices]'). Run it after changing the price file.
    """
    from galtea_otel.pipeline import Pipeline
    from galtea_otel.pricing import ENV_PRICES, PriceFileError, load_price_file, table_version
    from galtea_otel.settings import PipelineSettings

    price_file = os.environ.get(ENV_PRICES, "").strip()
    if price_file:
        try:
            load_price_file(price_file)
        except PriceFileError as exc:
            raise CliError(f"${ENV_PRICES}: {exc}") from None
    store = _open_store(ctx, must_exist=True)
    before = {(s.custom_id, s.version, s.project): s.cost for s in store.list_sessions(limit=-1)}
    groups: dict[str, list[tuple[str, str, str]]] = {}
    for key in sorted(before):
        groups.setdefault(json.dumps(store.session_assembly(key), sort_keys=True), []).append(key)
    for assembly, keys in groups.items():
        pipeline = Pipeline(store, PipelineSettings(**json.loads(assembly)))
        for start in range(0, len(keys), 200):
            pipeline.reassemble(keys[start:start + 200])
    after = {(s.custom_id, s.version, s.project): s.cost for s in store.list_sessions(limit=-1)}
    changed = sorted(k for k in after if after[k] != before.get(k))
    summary = {"sessions": len(after), "changed": len(changed), "price_file": price_file or None,
               "table": table_version(),
               "changed_sessions": [{"custom_id": c, "version": v, "project": p} for c, v, p in changed]}
    if as_json:
        _echo_json(summary)
    else:
        click.echo(f"repriced {len(after)} session(s), {len(changed)} changed"
                   f" (price file: {price_file or 'none'}; table: {summary['table'] or 'not installed'})")


@main.group("test-cases")
def test_cases() -> None:
    """Load and list evaluation test cases.

    A non-production session names a test case (session(..., test_case_id=...)) and takes its context.
    """


@test_cases.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.pass_context
def test_cases_load(ctx: click.Context, file: str) -> None:
    """Load test cases from FILE into the store (an id already there is replaced).

    FILE is a JSON list of objects (or {"test_cases": [...]}), or JSON Lines when it ends in .jsonl / .ndjson.
    Each object has an "id" and optionally "input", "expected_output", "context", "metadata".
    """
    from galtea_otel.instrument.testcases import register_test_cases

    try:
        cases = register_test_cases(file)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    if not cases:
        raise CliError(f"{file}: no test cases found")
    store = _open_store(ctx, must_exist=False)
    count = store.put_test_cases(cases)
    click.echo(f"Loaded {count} test case{'s' if count != 1 else ''} into {store.url}")


@test_cases.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of TestCase objects.")
@click.pass_context
def test_cases_list(ctx: click.Context, as_json: bool) -> None:
    """The test cases in the store, by id."""
    store = _open_store(ctx, must_exist=True)
    cases = store.list_test_cases()
    if as_json:
        _echo_json([c.model_dump(mode="json") for c in cases])
    elif not cases:
        click.echo("No test cases yet (load some with `galtea-otel test-cases load FILE`).")
    else:
        _echo_lines(_renderer().test_cases_table(cases))


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Record simulated conversations (no network), then show them.

    A scripted user talks to a support assistant backed by a deterministic fake LLM: four sessions (one an
    evaluation session linked to a test case, one that fails when the LLM backend goes down) with turns, a
    tool call, retrievals and token usage.
    """
    from galtea_otel.cli.demo import run_demo
    from galtea_otel.pipeline import read_session

    url = _state(ctx).store_url
    click.echo(f"Running the simulated conversations into {url} ...")
    keys = run_demo(store=url)
    store = _open_store(ctx, must_exist=True)
    details = [d for d in (read_session(store, (*key, "default")) for key in keys) if d is not None]
    if len(details) != len(keys):
        raise CliError(f"the demo recorded {len(details)} of its {len(keys)} sessions in {url}")
    renderer = _renderer()
    click.echo("")
    click.echo("$ galtea-otel sessions list")
    _echo_lines(renderer.sessions_table(details))
    for detail in details:
        click.echo("")
        click.echo(f"$ galtea-otel sessions show {detail.custom_id}")
        _echo_lines(renderer.session_detail(detail))
    click.echo("")
    click.echo(f"Next: galtea-otel sessions show {details[0].custom_id} --json")
    click.echo(f"Browse them: galtea-otel{_store_flag(url)} ui --open  (then http://127.0.0.1:7007/)")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --token-file.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=7007, show_default=True,
              help="Port (0: a free one, printed).")
@click.option("--token-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File holding a token every request must present (open the UI once with ?token=...; a cookie "
                   "keeps it), as for `galtea-otel serve`.")
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in the default browser.")
@click.option("--project", default=None, help="Show this project's sessions by default (serve --tokens).")
@click.option("--annotate", is_flag=True,
              help="Allow annotating: the session page gets a form that stores a score or label (and a note) of "
                   "the session or one turn, as an evaluation with source human (as `galtea-otel annotate`).")
@click.pass_context
def ui(ctx: click.Context, host: str, port: int, token_file: str | None, open_browser: bool,
       project: str | None, annotate: bool) -> None:
    """Browse the store's sessions in a web browser: live, local (nothing fetched from outside), read-only
    unless --annotate.

    Sessions page with filters in the URL (status, version, user, model, since/until, metadata.KEY, has_error,
    cost and turn ranges, a text search), a session page with the conversation, each turn's footer, a timeline
    of spans and "copy as JSON". New sessions and turns appear without a reload.
    """
    from galtea_otel.ui.server import UIError, check_bind, make_server, start_warm_up

    token = None
    if token_file:
        from galtea_otel.serve.options import ConfigError, load_token

        try:
            token = load_token(token_file)
        except (ConfigError, OSError) as exc:
            raise click.UsageError(str(exc)) from None
    try:
        check_bind(host, token)
    except UIError as exc:
        raise click.UsageError(str(exc)) from None
    store = _open_store(ctx, must_exist=False)
    try:
        server = make_server(store, host, port, token=token, project=project, annotate=annotate)
    except OSError as exc:
        raise CliError(f"cannot start the UI on {host}:{port}: {exc}") from None
    url = server.url
    click.echo(f"galtea-otel UI on {url} (store: {server.app.store_label}"
               f"{'; annotation allowed' if annotate else ''}); Ctrl-C to stop")
    if token:
        click.echo(f"  guarded by the token in {token_file}: open {url}?token=<token> once")
    sys.stdout.flush()
    start_warm_up()  # the records (pydantic) load now, not on the path to the address line
    if open_browser:
        import webbrowser

        webbrowser.open(url + (f"?token={token}" if token else ""))
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- sync to the Galtea platform ----------------------------------------------------------------------------


def _sync_config(api_key_file: str | None, api_url: str | None, product_id: str | None, version_map: str | None,
                 create_versions: bool, **options: Any) -> Any:
    try:
        from galtea_otel.sync.config import GalteaSyncConfig, SyncConfigError, VersionMapping, parse_version_map
    except ImportError as exc:
        raise CliError(f"the Galtea sync needs its dependencies (missing: {exc.name}): "
                       "pip install 'galtea-otel[galtea]'") from exc
    try:
        versions = None
        if product_id or version_map or create_versions:
            env = os.environ
            versions = VersionMapping(
                version_ids=parse_version_map(version_map if version_map is not None
                                              else env.get("GALTEA_VERSION_MAP", "")),
                product_id=product_id or env.get("GALTEA_PRODUCT_ID") or None,
                create_versions=create_versions,
                project_products=parse_version_map(env.get("GALTEA_PROJECT_PRODUCTS", ""),
                                                   "the project products map"),
            )
        return GalteaSyncConfig.from_env(api_key_file=api_key_file, base_url=api_url, versions=versions, **options)
    except SyncConfigError as exc:
        raise CliError(str(exc)) from exc


def _require_sync_extra() -> None:
    """The sync needs the ``galtea`` extra (httpx, the Galtea SDK's models): say so instead of a traceback."""
    import importlib

    for module in ("httpx", "galtea"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CliError(f"the sync needs the 'galtea' extra ({module} is not installed): "
                           "pip install 'galtea-otel[galtea]'") from exc


@main.group("sync", invoke_without_command=True)
@click.option("--api-key-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the Galtea API key [default: $GALTEA_API_KEY_FILE, else $GALTEA_API_KEY].")
@click.option("--api-url", metavar="URL", default=None,
              help="The Galtea API [default: $GALTEA_API_URL, else https://api.galtea.ai].")
@click.option("--product-id", metavar="ID", default=None,
              help="Map each version string to the version of this product with that name [$GALTEA_PRODUCT_ID].")
@click.option("--version-map", metavar="JSON|@FILE", default=None,
              help='Static map of version strings to platform version ids, e.g. {"1.4.0": "ver_..."}; the key "*" '
                   "matches every other version [$GALTEA_VERSION_MAP].")
@click.option("--create-versions", is_flag=True,
              help="With --product-id: create a version missing by name (from the fact galtea_otel.version).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=300.0,
              show_default=True, help="Give up retrying after this many seconds (what is left stays pending).")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for one answer of the platform.")
@click.option("--lease-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="How long a session being sent is reserved; a sender killed mid-way is taken over after it.")
@click.option("--retry-parked", is_flag=True, help="Try the sessions the platform refused again.")
@click.option("--no-backfill", is_flag=True,
              help="Send only what the outbox holds (by default, sessions never sent are enqueued first).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def sync(ctx: click.Context, api_key_file: str | None, api_url: str | None, product_id: str | None,
         version_map: str | None, create_versions: bool, timeout_s: float, request_timeout: float,
         lease_seconds: float, retry_parked: bool, no_backfill: bool, as_json: bool) -> None:
    """Send the store's sessions to the Galtea platform, once (see also `galtea-otel sync status`).

    Sessions are created with their custom id, version, test case, context and metadata; turns with their
    input, output, latency, tokens, cost, status and error; their tool / retrieval / ... spans as Galtea spans;
    a session that ended is finished (COMPLETED) or FAILED. Nothing is sent twice: what the platform holds is
    remembered in the store and looked up before anything is created. Transient failures are retried with
    backoff until --timeout; a session the platform refuses is parked (see `sync status`).
    Exits with 1 when something was refused or is still pending.
    """
    if ctx.invoked_subcommand is not None:
        return
    _require_sync_extra()
    from galtea_otel.sync.client import AuthFailed
    from galtea_otel.sync.worker import sync_once

    config = _sync_config(api_key_file, api_url, product_id, version_map, create_versions,
                          timeout_s=request_timeout, lease_s=lease_seconds, backfill=not no_backfill)
    store = _open_store(ctx, must_exist=True)
    bar: Any = None

    def start(total: int) -> None:
        nonlocal bar
        if not as_json:
            bar = click.progressbar(length=max(total, 1), label=f"Syncing {total} session(s)", file=sys.stderr,
                                    show_pos=True)
            bar.__enter__()

    try:
        summary = sync_once(store, config, timeout_s=timeout_s, retry_parked=retry_parked, on_start=start,
                            on_finished=lambda n: bar.update(n) if bar is not None else None)
    except AuthFailed as exc:
        raise CliError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    totals = summary.totals
    if as_json:
        _echo_json({
            "sent": summary.sent, "already_there": summary.already_there, "refused": summary.refused,
            "pending": summary.pending, "parked": summary.parked, "refusals": summary.refusals,
            "created": {"sessions": totals.sessions_created, "turns": totals.turns_created,
                        "spans": totals.spans_created, "status_updates": totals.status_updates},
            "found": {"sessions": totals.sessions_found, "turns": totals.turns_found, "spans": totals.spans_found},
            "last_error": summary.last_error,
        })
    else:
        click.echo(f"Synced to {config.base_url}: {summary.sent} sent, {summary.already_there} already there, "
                   f"{summary.refused} refused, {summary.pending} pending")
        click.echo(f"  created {totals.sessions_created} sessions, {totals.turns_created} turns, "
                   f"{totals.spans_created} spans, {totals.status_updates} status updates; found already there "
                   f"{totals.sessions_found} sessions, {totals.turns_found} turns, {totals.spans_found} spans")
        for refusal in summary.refusals:
            click.echo(f"  refused: {refusal}")
        if summary.pending and summary.last_error:
            click.echo(f"  still pending; last error: {summary.last_error}")
        if summary.parked > summary.refused:
            click.echo(f"  {summary.parked} parked in all: see `galtea-otel sync status`")
    if summary.refused or summary.pending:
        ctx.exit(1)


@sync.command("status")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N parked rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def sync_status(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The outbox: how many sessions wait to be sent, and those the platform refused (parked), with its error."""
    from datetime import datetime

    store = _open_store(ctx, must_exist=True)
    from galtea_otel.sync.outbox import open_outbox

    overview = open_outbox(store).overview(limit)
    if as_json:
        _echo_json({"pending": overview.pending, "parked": overview.parked,
                    "synced_sessions": overview.synced_sessions,
                    "parked_sessions": [{"custom_id": p.key[0], "version": p.key[1], "project": p.key[2],
                                         "attempts": p.attempts,
                                         "error": p.error} for p in overview.parked_items]})
        return
    click.echo(f"{overview.pending} pending, {overview.parked} parked (refused), "
               f"{overview.synced_sessions} sessions on the platform")
    for item in overview.parked_items:
        when = datetime.fromtimestamp(item.enqueued_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(f"  PARKED  {item.key[0]}  {item.key[1]}  (since {when}): {item.error}")
    if overview.parked:
        click.echo("Fix the cause, then: galtea-otel sync --retry-parked")



@main.command()
@click.option("--retry-failed", is_flag=True, help="Give the entries marked failed back to the assembler.")
@click.option("--json", "as_json", is_flag=True, help="Print the backlog as JSON.")
@click.pass_context
def inbox(ctx: click.Context, retry_failed: bool, as_json: bool) -> None:
    """The receiver's inbox (serve --assemble deferred): spans acknowledged and not assembled yet, and the entries
    the store refused (kept, marked failed)."""
    import time
    from datetime import datetime

    from galtea_otel.serve.inbox import Inbox, inbox_path

    store = _open_store(ctx, must_exist=True)
    try:
        path = inbox_path(store)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not path.exists():
        if as_json:
            _echo_json({"inbox": None, "entries": 0, "spans": 0, "oldest_received_ns": None, "failed_entries": 0,
                        "failed_spans": 0, "retried": 0, "failed": []})
        else:
            click.echo(f"no inbox at {path}: the receiver assembles inline (serve --assemble inline)")
        return
    box = Inbox(path, getattr(store, "synchronous", "NORMAL"))
    ctx.call_on_close(box.close)
    retried = box.retry_failed() if retry_failed else 0
    backlog, oldest, failed = box.backlog(), box.oldest_ns(), box.failed_items()
    if as_json:
        _echo_json({"inbox": str(path), "entries": backlog.entries, "spans": backlog.spans,
                    "oldest_received_ns": oldest, "failed_entries": backlog.failed_entries,
                    "failed_spans": backlog.failed_spans, "retried": retried,
                    "failed": [{"id": i, "received_ns": r, "spans": n, "error": e} for i, r, n, e in failed]})
        return
    behind = f", the oldest received {(time.time_ns() - oldest) / 1e9:.1f} s ago" if oldest else ""
    click.echo(f"{path}: {backlog.spans} span(s) in {backlog.entries} entr(ies) waiting to be assembled{behind}; "
               f"{backlog.failed_spans} span(s) in {backlog.failed_entries} entr(ies) marked failed")
    if retried:
        click.echo(f"{retried} failed entr(ies) given back to the assembler")
    for entry_id, received, spans, error in failed:
        when = datetime.fromtimestamp(received / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        click.echo(f"  FAILED  #{entry_id}  {spans} span(s), received {when}: {error}")
    if failed and not retry_failed:
        click.echo("Fix the cause, then: galtea-otel inbox --retry-failed")


def _full_short_help(command: click.Command) -> None:
    """Command lists show each command's whole first sentence (click cuts it at 45 characters by default)."""
    if command.short_help is None and command.help:
        first = command.help.strip().split("\n\n")[0]
        sentence = " ".join(first.split())
        end = sentence.find(". ")
        command.short_help = sentence if end < 0 else sentence[: end + 1]
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _full_short_help(sub)


_full_short_help(main)


if __name__ == "__main__":  # pragma: no cover
    main()
