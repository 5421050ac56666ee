"""``loopml pipelines``: apply workflow specs, run them, follow, cancel and read logs."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli._context import project_option, state
from loopml.cli._output import (
    as_json,
    check_output,
    console,
    err_console,
    listing,
    output_option,
    table,
    when,
    wide_option,
)

if TYPE_CHECKING:
    from rich.console import Console

    from loopml.client import Client
    from loopml.core.pipelines import PipelineRun

app = typer.Typer(help="Pipelines: workflow specs and their runs.", no_args_is_help=True)

PROJECT = project_option("The project that owns the pipeline.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
RUN = typer.Argument(..., help="A run's id (as `loopml pipelines runs` shows it).")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _duration(run_or_step: Any) -> str:
    from datetime import UTC, datetime

    start, end = run_or_step.started_at, run_or_step.finished_at
    if start is None:
        return "-"
    return f"{((end or datetime.now(UTC)) - start).total_seconds():.1f}s"


def _refused(path: Path, exc: Any) -> Any:
    """A refused spec, as compiler-style lines ``FILE:LINE: where: message``."""
    from loopml.core.errors import ValidationError

    problems = exc.details.get("problems") if isinstance(exc.details, dict) else None
    if not isinstance(problems, list) or not problems:
        return exc
    lines = [
        f"{path}:{p.get('line', '?')}: "
        + (f"{p['path']}: " if p.get("path") else "")
        + str(p.get("message", ""))
        for p in problems
        if isinstance(p, dict)
    ]
    count = f"{len(lines)} problem" + ("s" if len(lines) != 1 else "")
    return ValidationError(
        f"{path} was refused ({count}):\n" + "\n".join(lines), details=exc.details
    )


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="The spec (YAML).", exists=True, dir_okay=False),
    builtin: str | None = typer.Option(
        None, "--builtin", help="Apply a loop shipped with loopml instead (retrain, train-code)."
    ),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Check a spec and store it as the next version of its pipeline.

    Cycles, unknown references and type mismatches are refused with the line they are on.
    """
    from loopml.core.pipelines import SpecError
    from loopml.pipelines import loops

    if (file is None) == (builtin is None):
        raise typer.BadParameter("give a spec FILE or --builtin NAME (one of them)")
    if builtin is not None:
        text = loops.text(builtin)
        file = Path(f"{builtin}.yaml")
    else:
        assert file is not None
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from exc
    with state(ctx).client() as client:
        try:
            applied = client.pipelines.apply(text, project=project)
        except SpecError as exc:
            raise _refused(file, exc) from None
    if json_out:
        as_json(applied.model_dump(mode="json"))
        return
    version = applied.version
    if applied.created:
        console.print(
            f"applied [bold]{version.pipeline}[/] version {version.version}: "
            f"{len(version.steps)} steps ({' -> '.join(version.steps)})"
        )
    else:
        console.print(f"[bold]{version.pipeline}[/] unchanged: still version {version.version}")
    for warning in applied.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


@app.command("list")
def list_pipelines(
    ctx: typer.Context,
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List pipelines with their newest version."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        items = client.pipelines.list(project)
    rows = [(p.name, p.latest_version, when(p.updated_at), p.description) for p in items]
    records = [p.model_dump(mode="json") for p in items]
    listing(["pipeline", "version", "updated", "description"], rows, shape, records=records)


def _show_run(found: PipelineRun) -> None:
    console.print(
        f"run [bold]{found.id}[/] of {found.pipeline} v{found.version}: [bold]{found.status}[/]"
        + (f" — {found.error}" if found.error else ""),
        highlight=False,
    )
    if found.inputs:
        console.print(f"inputs  {found.inputs}", highlight=False, markup=False)
    if found.outputs:
        console.print(f"outputs {found.outputs}", highlight=False, markup=False)
    rows = []
    for step in found.steps or []:
        note = "cached" if step.cached_from else ""
        if step.error and not step.status.done:
            note = step.error.message.splitlines()[0][:80] if step.error.message else ""
        outputs = ", ".join(f"{k}={v}" for k, v in (step.outputs or {}).items())[:80]
        rows.append(
            (step.name, step.uses, step.status, step.attempt, _duration(step), outputs, note)
        )
    table(None, ["step", "uses", "status", "attempt", "time", "outputs", "note"], rows)


@app.command("show")
def show(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="A pipeline's name, or a run's id."),
    version: int | None = typer.Option(None, "--version", "-v", min=1, help="A version."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Show a pipeline (its spec and recent runs) or one run (its steps)."""
    with state(ctx).client() as client:
        if _RUN_ID.fullmatch(target):
            found = client.pipelines.get_run(target, project=project)
            if json_out:
                as_json(found.model_dump(mode="json"))
            else:
                _show_run(found)
            return
        pipeline, spec = client.pipelines.get(target, version=version, project=project)
        recent = client.pipelines.runs(pipeline=target, limit=10, project=project).items
    if json_out:
        as_json({**pipeline.model_dump(mode="json"), "version": spec.model_dump(mode="json")})
        return
    console.print(
        f"[bold]{pipeline.name}[/] version {spec.version} of {pipeline.latest_version} "
        f"({spec.spec_hash[:12]}), steps: {' -> '.join(spec.steps)}"
    )
    console.print(spec.spec, markup=False, highlight=False)
    _runs_table(recent)


def _given(inputs: dict[str, Any]) -> str:
    """A run's text inputs as ``name=value`` (a codeset's as pinned, ``trainer@3``)."""
    return ", ".join(f"{k}={v}" for k, v in inputs.items() if isinstance(v, str | int | float))


def _runs_table(items: list[PipelineRun], shape: str = "table") -> None:
    rows = [
        (
            r.id,
            r.pipeline,
            r.status,
            _given(r.inputs),
            when(r.created_at),
            _duration(r),
            r.version,
            r.error or "",
        )
        for r in items
    ]
    columns = ["run", "pipeline", "status", "inputs", "created", "time", "version", "error"]
    records = [r.model_dump(mode="json") for r in items]
    listing(columns, rows, shape, required=3, records=records)


def _inputs(values: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--input")
        found[key.strip()] = value
    return found


def _follow(client: Client, run_id: str, project: str, poll_s: float, out: Console) -> PipelineRun:
    """Poll the run until it ends, printing each step's status change on ``out`` (stderr
    under ``--json``, so stdout holds the JSON alone)."""
    seen: dict[str, str] = {}
    while True:
        found = client.pipelines.get_run(run_id, project=project)
        for step in found.steps or []:
            label = f"{step.status}" + (f" (attempt {step.attempt})" if step.attempt > 1 else "")
            if seen.get(step.name) != label:
                seen[step.name] = label
                out.print(f"  {step.name}: {label}", highlight=False)
        if found.status.finished:
            return found
        time.sleep(poll_s)


@app.command("run")
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The pipeline."),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE (repeatable)."),
    version: int | None = typer.Option(None, "--version", "-v", min=1, help="A version."),
    wait: bool = typer.Option(False, "--wait", "-w", help="Follow the run until it ends."),
    poll: float = typer.Option(1.0, "--poll", min=0.05, max=60, help="Seconds between polls."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Queue a run; with --wait, follow it and exit 1 unless it succeeds."""
    with state(ctx).client() as client:
        started = client.pipelines.run(
            name, inputs=_inputs(inputs), version=version, project=project
        )
        if not wait:
            if json_out:
                as_json(started.model_dump(mode="json"))
            else:
                console.print(f"queued run [bold]{started.id}[/] of {name} v{started.version}")
            return
        if not json_out:
            console.print(f"run [bold]{started.id}[/] of {name} v{started.version}")
        found = _follow(client, started.id, project, poll, err_console if json_out else console)
    if json_out:
        as_json(found.model_dump(mode="json"))
    else:
        _show_run(found)
    if found.status != "SUCCEEDED":
        raise typer.Exit(1)


def _apply_shipped(client: Client, name: str, project: str, out: Console) -> None:
    """Apply the shipped loop ``name`` when the project has no pipeline of that name,
    saying so on ``out``."""
    from loopml.core.errors import NotFoundError
    from loopml.pipelines import loops

    if name not in loops.names():
        return
    try:
        client.pipelines.get(name, project=project)
    except NotFoundError:
        applied = client.pipelines.apply(loops.text(name), project=project).version
        out.print(
            f"applied the shipped pipeline [bold]{name}[/] as version {applied.version}: "
            f"{' -> '.join(applied.steps)}"
        )


@app.command("assign")
def assign(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The pipeline."),
    codeset: str = typer.Option(..., "--codeset", "-c", help="The codeset it runs on."),
    input_name: str | None = typer.Option(
        None, "--codeset-input", help="The pipeline's codeset input, when it has several."
    ),
    inputs: list[str] = typer.Option([], "--input", "-i", help="NAME=VALUE (repeatable)."),
    no_run: bool = typer.Option(False, "--no-run", help="Only on new versions, not now."),
    project: str = PROJECT,
    json_out: bool = JSON,
) -> None:
    """Run the pipeline on the codeset's newest version now and on every new version.

    A loop shipped with loopml (train-code) is applied first when the project has no
    pipeline of that name.
    """
    with state(ctx).client() as client:
        _apply_shipped(client, name, project, err_console if json_out else console)
        trigger, started = client.pipelines.assign(
            name,
            codeset,
            input=input_name,
            inputs=_inputs(inputs),
            run_now=not no_run,
            project=project,
        )
    if json_out:
        as_json(
            {
                "trigger": trigger.model_dump(mode="json"),
                "run": None if started is None else started.model_dump(mode="json"),
            }
        )
        return
    console.print(
        f"trigger {trigger.name}: {name} runs on each new version of codeset {codeset}",
        highlight=False,
    )
    if started is not None:
        pinned = next((v for v in started.inputs.values() if str(v).startswith(f"{codeset}@")), "")
        console.print(f"queued run [bold]{started.id}[/] of {name} on {pinned}")


@app.command("runs")
def runs(
    ctx: typer.Context,
    name: str | None = typer.Argument(None, help="Only runs of this pipeline."),
    status: str | None = typer.Option(None, "--status", "-s", help="QUEUED, RUNNING, ..."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="How many runs."),
    project: str = PROJECT,
    output: str = output_option(),
    wide: bool = wide_option(),
    json_out: bool = JSON,
) -> None:
    """List runs, newest first."""
    shape = check_output(output, wide, json_out)
    with state(ctx).client() as client:
        page = client.pipelines.runs(
            pipeline=name,
            status=status.upper() if status else None,
            limit=limit,
            project=project,
        )
    _runs_table(page.items, shape)


@app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: str = RUN,
    step: str | None = typer.Argument(None, help="One step (default: every step that ran)."),
    attempt: int | None = typer.Option(None, "--attempt", "-a", min=1, help="An attempt."),
    project: str = PROJECT,
) -> None:
    """Print the captured log of a run's steps (their newest attempt, unless --attempt)."""
    from loopml.core.errors import NotFoundError

    with state(ctx).client() as client:
        if step is not None:
            text = client.pipelines.logs(run_id, step, attempt=attempt, project=project)
            print(text, end="" if text.endswith("\n") else "\n")
            return
        found = client.pipelines.get_run(run_id, project=project)
        for item in found.steps or []:
            if not item.attempts:
                continue
            console.print(
                f"==> {item.name} (attempt {item.attempts[-1].attempt}) <==", style="bold"
            )
            try:
                text = client.pipelines.logs(run_id, item.name, project=project)
            except NotFoundError as exc:
                text = f"({exc.message})\n"
            print(text, end="" if text.endswith("\n") else "\n")


@app.command("cancel")
def cancel(ctx: typer.Context, run_id: str = RUN, project: str = PROJECT) -> None:
    """Cancel a run: waiting steps at once, running ones at their next heartbeat."""
    with state(ctx).client() as client:
        found = client.pipelines.cancel(run_id, project=project)
    console.print(f"run [bold]{found.id}[/]: {found.status}")
