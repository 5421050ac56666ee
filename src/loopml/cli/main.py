"""The ``loopml`` command: the root app and the error boundary around every command."""

from __future__ import annotations

import sys
import traceback

import typer

from loopml.cli import (
    artifacts,
    datasets,
    db,
    demo,
    deployments,
    events,
    models,
    pipelines,
    predict,
    projects,
    runs,
    schedules,
    server,
    sql,
    tables,
    train,
    transforms,
    triggers,
    worker,
)
from loopml.cli._context import CliState

app = typer.Typer(
    name="loopml",
    help="loopml: the whole machine-learning loop in one self-hosted install.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(projects.app, name="projects")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(db.app, name="db")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(tables.app, name="tables")
app.add_typer(datasets.app, name="datasets")
app.add_typer(transforms.app, name="transforms")
app.add_typer(deployments.app, name="deployments")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(schedules.app, name="schedules")
app.add_typer(triggers.app, name="triggers")
app.command("up")(server.up)
app.command("ingest")(tables.ingest)
app.command("events")(events.events)
app.command("gc")(models.gc)
app.command("sql")(sql.sql)
app.command("train")(train.train)
app.command("deploy")(deployments.deploy)
app.command("predict")(predict.predict)
app.command("worker")(worker.worker)
app.command("demo")(demo.demo)


@app.callback()
def root(
    ctx: typer.Context,
    url: str | None = typer.Option(
        None, "--url", help="Server URL (default: LOOPML_CLIENT_URL or http://127.0.0.1:8765)."
    ),
) -> None:
    """loopml: the whole machine-learning loop in one self-hosted install."""
    ctx.obj = CliState(url=url)


@app.command("version")
def version() -> None:
    """Print loopml's version."""
    from loopml import __version__

    print(f"loopml {__version__}")


def main() -> None:
    """Entry point: known errors print one line and exit 1; others print a traceback, exit 2."""
    from loopml.core.errors import LoopmlError

    try:
        app()
    except LoopmlError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:
        print("internal error (a bug in loopml; please report it):", file=sys.stderr)
        traceback.print_exc()
        sys.exit(2)


if __name__ == "__main__":
    main()
