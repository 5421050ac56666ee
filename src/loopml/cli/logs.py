"""``loopml logs TARGET``: a deployment's replica log or a pipeline run's step logs, or
(``--platform``) the server's own log, searched by text and level on the server, or followed
as they grow."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import project_option, state
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.logs import LEVELS, LogQuery, new_lines
from loopml.core.pipelines import RUN_ID_PATTERN

if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.core.pipelines import PipelineRun

POLL_S = 1.0
_FOLLOW_TAIL = 1000  # the most one look returns: more new lines a second than this are cut


def logs(
    ctx: typer.Context,
    target: str | None = typer.Argument(
        None, help="A deployment's name, or a pipeline run's id (none with --platform)."
    ),
    project: str = project_option("The project of the deployment or run."),
    tail: int = typer.Option(100, "--tail", "-n", min=1, max=1000, help="Last N lines."),
    grep: str | None = typer.Option(None, "--grep", "-g", help="Only lines holding TEXT."),
    level: str | None = typer.Option(
        None, "--level", "-l", help=f"Only lines at this level or above: {', '.join(LEVELS)}."
    ),
    step: str | None = typer.Option(None, "--step", "-s", help="One step of a run."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print new lines as they come (Ctrl-C; a run: its end)."
    ),
    platform: bool = typer.Option(
        False, "--platform", help="The server's own log (platform admins), not a target's."
    ),
) -> None:
    """Print (or follow) the log of a deployment's replicas, of a pipeline run's steps, or
    of the server itself."""
    query = LogQuery(grep=grep or None, level=level.lower() if level else None)
    if (target is None) != platform:
        raise ValidationError("name a deployment or a pipeline run, or pass --platform (not both)")
    if platform and step is not None:
        raise ValidationError("--step is for a pipeline run, not --platform")
    with state(ctx).client() as client:
        try:
            if target is None:
                _platform(client, tail, query, follow)
                return
            run = _find(client, target, project)
            if run is None and step is not None:
                raise ValidationError(f"--step is for a pipeline run; {target!r} is a deployment")
            if run is None:
                _deployment(client, target, project, tail, query, follow)
            else:
                _run(client, run, project, tail, query, step, follow)
        except KeyboardInterrupt:
            return


def _find(client: Client, target: str, project: str) -> PipelineRun | None:
    """The run ``target`` names, ``None`` when it names a deployment (a run id is 32 hex
    characters, which a deployment's name may also be: the run is tried first)."""
    if RUN_ID_PATTERN.fullmatch(target):
        try:
            return client.pipelines.get_run(target, project=project)
        except NotFoundError:
            pass
    try:
        client.deployments.get(target, project=project)
    except (NotFoundError, ValidationError):
        kind = "pipeline run or deployment" if RUN_ID_PATTERN.fullmatch(target) else "deployment"
        raise NotFoundError(
            f"no {kind} {target!r} in project {project!r}: name a deployment "
            "(loopml deployments list) or a pipeline run's 32-character id "
            "(loopml pipelines runs), and -p for another project",
            details={"target": target, "project": project},
        ) from None
    return None


def _deployment(
    client: Client, name: str, project: str, tail: int, query: LogQuery, follow: bool
) -> None:
    def look(count: int) -> list[str]:
        return client.deployments.logs(
            name, tail=count, grep=query.grep, level=query.level, project=project
        )

    _follow(look, tail, follow)


def _platform(client: Client, tail: int, query: LogQuery, follow: bool) -> None:
    def look(count: int) -> list[str]:
        return client.platform_logs(tail=count, grep=query.grep, level=query.level)

    _follow(look, tail, follow)


def _follow(look: Callable[[int], list[str]], tail: int, follow: bool) -> None:
    """Print the last ``tail`` lines ``look`` returns; with ``follow``, look again every
    ``POLL_S`` and print only the lines after those seen."""
    seen = look(tail)
    _print(seen)
    while follow:
        time.sleep(POLL_S)
        now = look(_FOLLOW_TAIL)
        _print(new_lines(seen, now))
        seen = now


def _run(
    client: Client,
    run: PipelineRun,
    project: str,
    tail: int,
    query: LogQuery,
    step: str | None,
    follow: bool,
) -> None:
    seen: dict[tuple[str, int], list[str]] = {}
    first = True
    while True:
        for name, attempt in _attempts(run, step):
            lines = _step_lines(client, run.id, name, project, query)
            new = new_lines(seen.get((name, attempt), []), lines)
            seen[(name, attempt)] = lines
            _print(new[-tail:] if first else new, "" if step else f"[{name}] ")
        first = False
        if not follow or run.status.finished:
            return
        time.sleep(POLL_S)
        run = client.pipelines.get_run(run.id, project=project)


def _attempts(run: PipelineRun, step: str | None) -> list[tuple[str, int]]:
    steps = run.steps or []
    if step is not None and step not in {s.name for s in steps}:
        names = ", ".join(s.name for s in steps) or "none"
        raise NotFoundError(f"run {run.id} has no step {step!r} (its steps: {names})")
    return [
        (s.name, s.attempts[-1].attempt) for s in steps if s.attempts and step in (None, s.name)
    ]


def _step_lines(client: Client, run_id: str, step: str, project: str, query: LogQuery) -> list[str]:
    try:
        text = client.pipelines.logs(
            run_id, step, grep=query.grep, level=query.level, project=project
        )
    except NotFoundError:  # no log uploaded yet
        return []
    return text.splitlines()


def _print(lines: list[str], prefix: str = "") -> None:
    for line in lines:
        print(prefix + line, flush=True)
