"""The ``loopml`` command: the root app and the error boundary around every command."""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from difflib import get_close_matches

import typer
from typer import _click as click  # typer's own click, which its classes are built on
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

from loopml.cli import _context
from loopml.cli._context import CliState
from loopml.cli._summaries import SUMMARIES

# Each command's module is imported only when that command runs (or help lists it): a
# command pays for its own imports, not for every other command's (pandas, pyarrow, the
# server), which cut `loopml ingest`'s start by about a third.
_GROUPS: dict[str, str] = {
    "projects": "projects",
    "artifacts": "artifacts",
    "db": "db",
    "runs": "runs",
    "experiments": "experiments",
    "models": "models",
    "tables": "tables",
    "datasets": "datasets",
    "transforms": "transforms",
    "deployments": "deployments",
    "pipelines": "pipelines",
    "schedules": "schedules",
    "triggers": "triggers",
    "streams": "streams",
    "features": "features",
    "codesets": "codesets",
    "users": "users",
    "tokens": "tokens",
    "alerts": "alerts",
}
_COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("server", "up"),
    "ingest": ("tables", "ingest"),
    "events": ("events", "events"),
    "gc": ("models", "gc"),
    "sql": ("sql", "sql"),
    "train": ("train", "train"),
    "deploy": ("deployments", "deploy"),
    "predict": ("predict", "predict"),
    "worker": ("worker", "worker"),
    "demo": ("demo", "demo"),
    "login": ("login", "login"),
    "use": ("use", "use"),
    "down": ("down", "down"),
    "status": ("status", "status"),
    "monitor": ("monitor", "monitor"),
    "logs": ("logs", "logs"),
    "backup": ("backup", "backup"),
    "restore": ("backup", "restore"),
}


def _lazy_command(name: str) -> click.Command | None:
    command: click.Command
    if name in _GROUPS:
        sub: typer.Typer = importlib.import_module(f"loopml.cli.{_GROUPS[name]}").app
        sub.rich_markup_mode = None  # as the root's: plain help text
        command = typer.main.get_group(sub)
    elif name in _COMMANDS:
        module, function = _COMMANDS[name]
        single = typer.Typer()
        single.command(name)(getattr(importlib.import_module(f"loopml.cli.{module}"), function))
        info = single.registered_commands[0]
        command = typer.main.get_command_from_info(
            info, pretty_exceptions_short=True, rich_markup_mode=None
        )
    else:
        return None
    command.name = name
    return command


def _summary(name: str) -> Callable[[int], str]:
    return lambda limit: make_default_short_help(SUMMARIES[name], limit)


class _LazyGroup(TyperGroup):
    """The root group: its own commands, plus the lazily imported ones above."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *_GROUPS, *_COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or _lazy_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's, with the lazy commands' help from SUMMARIES: importing every command's
        # module to list them was 0.40 s of a 0.43 s `loopml --help`.
        shown = []
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                shown.append((name, command.get_short_help_str))
        lazy = [(n, _summary(n)) for n in [*_GROUPS, *_COMMANDS]]
        if not shown and not lazy:
            return
        limit = formatter.width - 6 - max(len(n) for n, _ in [*shown, *lazy])
        rows = [(n, short(limit)) for n, short in [*shown, *lazy]]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # Typer suggests among the commands it holds, which here are not the lazy ones.
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError as exc:
            if args and "Did you mean" not in exc.message:
                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    named = ", ".join(repr(m) for m in matches)
                    exc.message = f"{exc.message.rstrip('.')}. Did you mean {named}?"
            raise


app = typer.Typer(
    name="loopml",
    help="loopml: the whole machine-learning loop in one self-hosted install.",
    cls=_LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)


def _show_version(shown: bool) -> None:
    if shown:
        version()
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: str | None = typer.Option(
        None, "--url", help="Server URL (default: LOOPML_CLIENT_URL or http://127.0.0.1:8765)."
    ),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_show_version,
        is_eager=True,
        help="Show loopml's version and its database schema revision, then exit.",
    ),
) -> None:
    """loopml: the whole machine-learning loop in one self-hosted install."""
    _context.forget_settings()
    ctx.obj = CliState(url=url)
    _context.invoked.clear()
    _context.invoked.append(ctx.obj)


@app.command("version")
def version() -> None:
    """Print loopml's version, the schema revision it ships, and the revision of the home's
    database where that is a SQLite file here (a server database is not contacted)."""
    from loopml._version import __version__
    from loopml.cli._versions import database_line, schema_head

    print(f"loopml {__version__}")
    print(f"schema   {schema_head()} (newest migration of this version)")
    line = database_line()
    if line is not None:
        print(line)


def _nearby(details: dict[str, object] | None) -> str:
    """Close names and other projects for a model or table not found (see ``_nearby``)."""
    if not details or not _context.invoked:
        return ""
    from loopml.cli import _nearby as nearby
    from loopml.core.errors import LoopmlError

    try:
        with _context.invoked[0].client() as client:
            return nearby.hint(client, dict(details))
    except LoopmlError:
        return ""


def main() -> None:
    """Entry point: known errors print one line and exit 1; others print a traceback, exit 2."""
    from loopml.core.errors import LoopmlError, NotFoundError

    try:
        app()
    except LoopmlError as exc:
        near = _nearby(exc.details) if isinstance(exc, NotFoundError) else ""
        print(f"error: {exc.message}" + (f"; {near}" if near else ""), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        print("internal error (a bug in loopml; please report it):", file=sys.stderr)
        traceback.print_exc()
        sys.exit(2)


if __name__ == "__main__":
    main()
