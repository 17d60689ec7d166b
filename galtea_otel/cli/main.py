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
@click.pass_context
def main(ctx: click.Context, store_url: str | None) -> None:
    """galtea-otel: conversations with LLM applications, recorded as session records on OpenTelemetry."""
    from galtea_otel.store import default_store_url

    ctx.obj = State(store_url=store_url or default_store_url())


@main.group()
def sessions() -> None:
    """List and show recorded sessions."""


@sessions.command("list")
@click.option("--status", type=click.Choice(STATUSES, case_sensitive=False),
              help="Only sessions in this status.")
@click.option("--version", "version", metavar="V", help="Only sessions of this product version.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most N sessions.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of Session objects.")
@click.pass_context
def sessions_list(
    ctx: click.Context, status: str | None, version: str | None, limit: int, as_json: bool
) -> None:
    """Sessions, newest first."""
    store = _open_store(ctx, must_exist=True)
    found = store.list_sessions(status=status.upper() if status else None, version=version, limit=limit)
    if as_json:
        _echo_json([s.model_dump(mode="json") for s in found])
    elif not found:
        click.echo("No sessions" + (" matching the filters." if status or version else " yet."))
    else:
        _echo_lines(_renderer().sessions_table(found))


@sessions.command("show")
@click.argument("custom_id")
@click.option("--version", "version", metavar="V", help="The session's version (default: its newest).")
@click.option("--json", "as_json", is_flag=True, help="Print one SessionDetail object as JSON.")
@click.pass_context
def sessions_show(ctx: click.Context, custom_id: str, version: str | None, as_json: bool) -> None:
    """One session: its fields, its inference results in order, and their spans."""
    from galtea_otel.pipeline import read_session

    store = _open_store(ctx, must_exist=True)
    key = store.find_session_key(custom_id, version)
    detail = read_session(store, key) if key is not None else None
    if detail is None:
        which = f"{custom_id!r}" + (f" with version {version!r}" if version else "")
        raise CliError(f"no session {which} in {store.url} (see `galtea-otel sessions list`)")
    if as_json:
        _echo_json(detail.model_dump(mode="json"))
    else:
        _echo_lines(_renderer().session_detail(detail))


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
    details = [d for d in (read_session(store, key) for key in keys) if d is not None]
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


if __name__ == "__main__":  # pragma: no cover
    main()
