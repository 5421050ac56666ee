"""Pipelines as services: apply a spec, start, read and cancel runs, read a step's log.

Each function takes its backends as arguments (a ``MetadataStore``, an ``ArtifactStore``)
and opens its own transactions; the API, the CLI's server-side commands and tests call them.

Example:
    >>> applied = apply_spec(store, "default", Path("pipelines/retrain.yaml").read_text(),
    ...                      actor="ada")
    >>> run = start_run(store, "default", applied.pipeline.name, {"table": "churn"},
    ...                 actor="ada")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.logs import LogQuery
from loopml.core.pipelines import (
    Pipeline,
    PipelineApplied,
    PipelineRun,
    PipelineVersion,
    RunStatus,
    StepAttempt,
    validate_pipeline_name,
)
from loopml.core.step_resources import DEFAULT_CPUS
from loopml.core.types import Page
from loopml.pipelines._capacity import check_resources
from loopml.pipelines.catalog import BUILTINS, PYTHON
from loopml.pipelines.parse import parse_spec
from loopml.pipelines.refs import find
from loopml.pipelines.spec import ParsedPipeline, PipelineSpec
from loopml.pipelines.types import check_value, parse_text_input
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store import pipeline_runs as runs_repo
from loopml.store import pipelines as repo
from loopml.store.pipeline_runs import StepPlan

MAX_INPUTS_BYTES = 64 * 1024
MAX_LOG_BYTES = 20 * 1024 * 1024


def _source(text: str) -> dict[str, str]:
    ref = find(text)[0][0]
    return {"input": ref.name} if ref.step is None else {"step": ref.step, "output": ref.name}


def definition_of(parsed: ParsedPipeline) -> dict[str, Any]:
    """What a version stores for workers: the normalized spec, the step order, each step's
    upstream steps, where each pipeline output comes from, and where each step's condition
    reads its value (the store settles conditions without parsing references)."""
    outputs = {name: _source(text) for name, text in parsed.spec.outputs.items()}
    definition: dict[str, Any] = {
        "spec": parsed.spec.model_dump(mode="json", by_alias=True),
        "order": parsed.order,
        "needs": parsed.needs,
        "outputs": outputs,
    }
    conditions = {
        step.name: {**_source(step.if_), "text": step.if_.strip()}
        for step in parsed.spec.steps
        if step.if_ is not None
    }
    if conditions:
        definition["conditions"] = conditions
    return definition


def apply_spec(store: MetadataStore, project: str, text: str, *, actor: str) -> PipelineApplied:
    """Check a spec and store it as its pipeline's next version (``created`` false when it
    equals the newest version once normalized).

    Raises:
        SpecError: the spec is refused; each problem names its line.
        ValidationError: a step asks for resources no node of the recently seen workers has.
        NotFoundError: no such project.
    """
    parsed = parse_spec(text)
    warnings = check_resources(store, parsed.spec)
    with store.session() as session:
        applied = repo.apply(
            session,
            project,
            name=parsed.spec.name,
            description=parsed.spec.description,
            spec_text=text,
            spec_hash=parsed.spec_hash,
            definition=definition_of(parsed),
            actor=actor,
        )
    return applied.model_copy(update={"warnings": warnings}) if warnings else applied


def _inputs(spec: PipelineSpec, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(spec.inputs))
    if unknown:
        known = ", ".join(spec.inputs) or "none"
        raise ValidationError(
            f"pipeline {spec.name!r} has no input {unknown[0]!r} (its inputs: {known})",
            details={"field": "inputs", "unknown": unknown},
        )
    values: dict[str, Any] = {}
    for name, declared in spec.inputs.items():
        value = given.get(name, declared.default)
        if value is None:
            raise ValidationError(
                f"input {name!r} ({declared.type}) is required: pass it, for example "
                f"`--input {name}=...`",
                details={"field": f"inputs.{name}"},
            )
        if isinstance(value, str):
            value = parse_text_input(declared.type, value)
        if why := check_value(declared.type, value):
            raise ValidationError(
                f"input {name!r}: {why}", details={"field": f"inputs.{name}", "type": declared.type}
            )
        values[name] = value
    return values


def _pin_codesets(
    session: Session, project: str, spec: PipelineSpec, values: dict[str, Any]
) -> dict[str, Any]:
    """A ``codeset`` input named without a version (``trainer``) becomes the codeset's newest
    version when the run is queued (``trainer@4``): the run records which code it ran, and a
    run a ``codeset.versioned`` trigger starts runs the version that fired it (or a newer)."""
    from loopml.core.codesets import parse_codeset_ref
    from loopml.pipelines.types import ValueType
    from loopml.store import codesets

    pinned = dict(values)
    for name, declared in spec.inputs.items():
        value = values.get(name)
        if declared.type != ValueType.CODESET or not isinstance(value, str):
            continue
        codeset, number = parse_codeset_ref(value)
        if number is None:
            found = codesets.get(session, project, codeset)
            if found.latest_version == 0:
                raise ValidationError(f"codeset {codeset!r} has no version yet")
            pinned[name] = f"{codeset}@{found.latest_version}"
    return pinned


def plans(definition: dict[str, Any]) -> list[StepPlan]:
    """The step rows a run of ``definition`` starts with."""
    spec = PipelineSpec.model_validate(definition["spec"])
    order: list[str] = definition["order"]
    needs: dict[str, list[str]] = definition["needs"]
    made = []
    for step in spec.steps:
        builtin = BUILTINS.get(step.uses or "") if step.python is None else None
        cache = step.cache if step.cache is not None else bool(builtin and builtin.cache)
        made.append(
            StepPlan(
                name=step.name,
                position=order.index(step.name),
                uses=step.uses if builtin is not None and step.uses else PYTHON,
                needs=list(needs.get(step.name, [])),
                max_retries=step.retries.count,
                retry=step.retries.model_dump(),
                timeout_s=step.timeout,
                cache=cache,
                cpus=DEFAULT_CPUS if step.resources is None else step.resources.weight,
            )
        )
    return made


def start_run(
    store: MetadataStore,
    project: str,
    pipeline: str,
    inputs: dict[str, Any] | None = None,
    *,
    version: int | None = None,
    actor: str,
) -> PipelineRun:
    """Queue a run of the pipeline's newest version (or ``version``) with ``inputs``;
    inputs left out take their defaults, and text is read as the input's type.

    Raises:
        ValidationError: an unknown input, a missing required one, or a value of the wrong
            type.
        NotFoundError: no such project, pipeline or version.
    """
    with store.session() as session:
        return queue_run(session, project, pipeline, inputs, version=version, actor=actor)


def check_inputs(
    session: Session, project: str, pipeline: str, inputs: dict[str, Any] | None
) -> dict[str, Any]:
    """``inputs`` as a run of the pipeline's newest version would take them (see
    ``start_run``); schedules and triggers check theirs when they are made."""
    validate_pipeline_name(pipeline)
    _, definition, _ = repo.get_version(session, project, pipeline, None)
    return _inputs(PipelineSpec.model_validate(definition["spec"]), dict(inputs or {}))


def queue_run(
    session: Session,
    project: str,
    pipeline: str,
    inputs: dict[str, Any] | None = None,
    *,
    version: int | None = None,
    actor: str,
) -> PipelineRun:
    """``start_run`` in the caller's transaction (a trigger advances its cursor in the same
    one). Raises what ``start_run`` raises, before writing anything."""
    validate_pipeline_name(pipeline)
    _, definition, version_id = repo.get_version(session, project, pipeline, version)
    spec = PipelineSpec.model_validate(definition["spec"])
    values = _pin_codesets(session, project, spec, _inputs(spec, dict(inputs or {})))
    return runs_repo.create_run(
        session,
        project,
        pipeline,
        version_id=version_id,
        inputs=values,
        steps=plans(definition),
        actor=actor,
    )


def list_pipelines(store: MetadataStore, project: str) -> list[Pipeline]:
    """A project's pipelines."""
    with store.session() as session:
        return repo.list_(session, project)


def get_pipeline(
    store: MetadataStore, project: str, name: str, version: int | None = None
) -> tuple[Pipeline, PipelineVersion]:
    """A pipeline and one of its versions (the newest when ``version`` is ``None``)."""
    with store.session() as session:
        found = repo.get(session, project, name)
        spec, _, _ = repo.get_version(session, project, name, version)
    return found, spec


def get_run(store: MetadataStore, project: str, run_id: str) -> PipelineRun:
    """A run with its steps and their attempts."""
    with store.session() as session:
        return runs_repo.get_run(session, project, run_id)


def list_runs(
    store: MetadataStore,
    project: str,
    *,
    pipeline: str | None = None,
    status: RunStatus | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[PipelineRun]:
    """A project's runs, newest first."""
    with store.session() as session:
        return runs_repo.list_runs(
            session, project, pipeline=pipeline, status=status, limit=limit, cursor=cursor
        )


def recent_runs(store: MetadataStore, projects: Sequence[str], *, limit: int) -> list[PipelineRun]:
    """The ``limit`` newest runs of any of ``projects``, newest first (one query)."""
    with store.session() as session:
        return runs_repo.recent_runs(session, projects, limit=limit)


def cancel_run(store: MetadataStore, project: str, run_id: str, *, actor: str) -> PipelineRun:
    """Cancel a run (see ``store.pipeline_runs.cancel_run``)."""
    with store.session() as session:
        return runs_repo.cancel_run(session, project, run_id, actor=actor)


def read_log(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    run_id: str,
    step: str,
    attempt: int | None = None,
    query: LogQuery | None = None,
) -> tuple[StepAttempt, bytes]:
    """An attempt's captured log (the newest attempt's when ``attempt`` is ``None``), only
    its lines that ``query`` keeps when one is given.

    A running attempt's log is the part its worker uploaded so far (at each heartbeat).

    Raises:
        NotFoundError: no such run, step or attempt, or no log was captured (yet).
    """
    with store.session() as session:
        found = runs_repo.attempt_log(session, project, run_id, step, attempt)
    if found.log_key is None or not artifacts.exists(found.log_key):
        raise NotFoundError(
            f"no log yet for attempt {found.attempt} of step {step!r} ({found.status})",
            details={"run": run_id, "step": step, "attempt": found.attempt},
        )
    data = artifacts.read_bytes(found.log_key)
    if query is not None and not query.everything:
        lines = data.decode("utf-8", errors="replace").splitlines()
        data = "".join(line + "\n" for line in query.select(lines)).encode()
    return found, data[-MAX_LOG_BYTES:]
