"""Turning a claimed step into a task: references replaced by values, typed inputs pinned to
exact versions, and the cache key.

Pinning (``sales`` -> ``sales@7``, ``churn_snap`` -> ``churn_snap@3``, ``trainer`` ->
``trainer@2``, ``churn@champion`` -> ``churn/4``) makes the step read exactly what its cache
key and its recorded inputs say it read. The cache key is the SHA-256 of the step's
definition after resolution, the content hashes of its typed inputs (a dataset version's
content and eval-set hashes, a table's id and version, a codeset version's content hash, a
model package's manifest hash) and, for a python step, its module's source.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core.errors import ValidationError
from loopml.pipelines.base import StepTask
from loopml.pipelines.catalog import BUILTINS, PYTHON
from loopml.pipelines.refs import ValueRef, substitute
from loopml.pipelines.spec import PipelineSpec, StepSpec
from loopml.pipelines.types import ValueType
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store.pipeline_queue import Claim, RunContext

CACHE_KEY_VERSION = 1


class StepInputError(ValidationError):
    """A step's references cannot be resolved (an upstream step did not return an output)."""

    code = "step_input_error"


@dataclass(frozen=True)
class PreparedStep:
    """A claimed step ready to run: its task, resolved inputs and cache key."""

    task: StepTask
    inputs: dict[str, Any]
    cache_key: str | None


def _lookup(context: RunContext, ref: ValueRef) -> Any:
    if ref.step is None:
        if ref.name not in context.inputs:
            raise StepInputError(f"the run has no input {ref.name!r}")
        return context.inputs[ref.name]
    outputs = context.outputs.get(ref.step)
    if outputs is None:
        raise StepInputError(
            f"step {ref.step!r} has not finished, so ${{{{ {ref} }}}} has no value"
        )
    if ref.name not in outputs:
        raise StepInputError(
            f"step {ref.step!r} did not return output {ref.name!r} (it returned "
            f"{', '.join(outputs) or 'nothing'})"
        )
    return outputs[ref.name]


class _Pinner:
    """Pins typed values to exact versions and fingerprints their content."""

    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, project: str) -> None:
        self.store = store
        self.artifacts = artifacts
        self.project = project

    def table(self, text: str) -> tuple[str, str]:
        from loopml.core.transforms import parse_table_version
        from loopml.data import lake

        name, version = parse_table_version(text)
        found = lake.get_table(self.store, self.artifacts, self.project, name)
        if version is None:
            version = found.version
        if version < 0:
            return name, f"table:{found.id}:empty"
        return f"{name}@{version}", f"table:{found.id}:{version}"

    def source(self, text: str) -> tuple[str, str]:
        from loopml.data.sources import parse_table_source
        from loopml.data.transforms import tables_read

        if parse_table_source(text) is not None:
            return self.table(text.strip())
        parts = [self.table(name)[1] for name in sorted(tables_read(text))]
        digest = hashlib.sha256(text.encode()).hexdigest()
        return text, f"sql:{digest}:{','.join(parts)}"

    def dataset(self, text: str) -> tuple[str, str]:
        from loopml.data.datasets import get_version

        found = get_version(self.store, self.project, text)
        eval_hash = found.split.eval_hash if found.split else ""
        return f"{found.dataset}@{found.version}", f"dataset:{found.content_hash}:{eval_hash}"

    def codeset(self, text: str) -> tuple[str, str]:
        from loopml.core.codesets import parse_codeset_ref
        from loopml.store import codesets

        name, number = parse_codeset_ref(text)
        with self.store.session() as session:
            found, _ = codesets.version(session, self.project, name, number)
        return f"{name}@{found.version}", f"codeset:{found.content_hash}"

    def model(self, text: str) -> tuple[str, str]:
        from loopml.registry import resolve
        from loopml.store import lineage

        found = resolve(self.store, self.project, text)
        with self.store.session() as session:
            manifest = lineage.logged_model(session, found.logged_model_id).manifest_sha256
        return f"{found.model}/{found.version}", f"model:{manifest}"

    def run(self, text: str) -> tuple[str, str]:
        """A run by its model at ``model``, else by every model it logged (a codeset's MLflow
        model is packaged at ``loopml-model``)."""
        from loopml.core.errors import NotFoundError
        from loopml.store import lineage, logged_models

        with self.store.session() as session:
            try:
                found = lineage.find_logged_model(session, self.project, text, "model")
            except NotFoundError:
                others = logged_models.list_for_run(session, self.project, text)
                if not others:
                    raise
                return text, "run:" + ",".join(f"{m.path}={m.manifest_sha256}" for m in others)
        return text, f"run:{found.manifest_sha256}"

    def pin(self, kind: ValueType, value: Any) -> tuple[Any, str | None]:
        pinners = {
            ValueType.TABLE: self.table,
            ValueType.SOURCE: self.source,
            ValueType.DATASET: self.dataset,
            ValueType.CODESET: self.codeset,
            ValueType.MODEL: self.model,
            ValueType.RUN: self.run,
        }
        if kind in pinners and isinstance(value, str):
            return pinners[kind](value)
        return value, None


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, found on ``sys.path`` without importing anything (a
    package's ``__init__`` is user code, and it belongs in the step's process)."""
    from importlib.machinery import PathFinder

    parts = module.split(".")
    search: list[str] | None = list(sys.path)
    spec = None
    for index, part in enumerate(parts):
        spec = PathFinder.find_spec(part, search)
        if spec is None:
            return None
        if index < len(parts) - 1:
            locations = spec.submodule_search_locations
            if not locations:
                return None
            search = list(locations)
    origin = None if spec is None else spec.origin
    return Path(origin) if origin and Path(origin).is_file() else None


def _code_hash(target: str) -> str:
    """SHA-256 of a python step's module source: editing the step misses the cache."""
    found = _module_file(target.partition(":")[0])
    return "unknown" if found is None else hashlib.sha256(found.read_bytes()).hexdigest()


def _hidden_inputs(pinner: _Pinner, uses: str, params: dict[str, Any]) -> dict[str, str]:
    """What a built-in reads that its parameters do not show: a custom trainer's code, the
    table's own contract a validation checks against."""
    if uses == "batch_predict" and isinstance(params.get("deployment"), str):
        # Which version scores depends on the deployment now: key the cache on that version.
        from loopml.core.deployments import validate_deployment_name
        from loopml.store import deployments

        with pinner.store.session() as session:
            found, roles = deployments.get_with_roles(
                session, pinner.project, validate_deployment_name(params["deployment"])
            )
        primary = next(r for r in found.revisions if r.number == roles.primary)
        return {"deployment_model": pinner.model(f"{primary.model}/{primary.version}")[1]}
    if uses == "train_custom" and isinstance(params.get("entrypoint"), str):
        return {"entrypoint_code": _code_hash(params["entrypoint"])}
    if (
        uses == "validate"
        and params.get("contract") is None
        and isinstance(params.get("table"), str)
    ):
        from loopml.core.errors import NotFoundError
        from loopml.core.transforms import parse_table_version
        from loopml.data.validation import get_contract

        try:
            rules = get_contract(
                pinner.store, pinner.project, parse_table_version(params["table"])[0]
            )
        except NotFoundError:
            # No contract (or no table, which the step reports): key on its absence, so
            # setting one later misses the cache.
            return {"contract": "none"}
        text = json.dumps(rules.model_dump(mode="json"), sort_keys=True)
        return {"contract": hashlib.sha256(text.encode()).hexdigest()}
    return {}


def cache_key(step: StepSpec, uses: str, params: dict[str, Any], prints: dict[str, str]) -> str:
    """The step's cache key (see the module docstring)."""
    body = {
        "v": CACHE_KEY_VERSION,
        "uses": uses,
        "python": step.python,
        "code": _code_hash(step.python) if step.python else None,
        "outputs": {k: str(v) for k, v in step.outputs.items()},
        "params": params,
        "inputs": prints,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(
    store: MetadataStore,
    artifacts: ArtifactStore,
    claim: Claim,
    context: RunContext,
    *,
    settings: dict[str, Any],
    sys_path: list[str],
    api_url: str | None = None,
) -> PreparedStep:
    """Resolve the claimed step of ``context``'s run into a task.

    Raises:
        StepInputError: a reference has no value.
        NotFoundError, ValidationError: a typed input names nothing that exists.
    """
    spec = PipelineSpec.model_validate(context.definition["spec"])
    step = spec.step(claim.step)
    params: dict[str, Any] = substitute(step.with_, lambda ref: _lookup(context, ref))
    prints: dict[str, str] = {}
    builtin = BUILTINS.get(claim.uses) if claim.uses != PYTHON else None
    if builtin is not None:
        pinner = _Pinner(store, artifacts, claim.project)
        for name, param in builtin.params.items():
            if name not in params or params[name] is None:
                if param.default is not None:
                    params[name] = param.default
                else:
                    params.pop(name, None)
                continue
            params[name], fingerprint = pinner.pin(param.type, params[name])
            if fingerprint is not None:
                prints[name] = fingerprint
        if claim.cache:
            prints.update(_hidden_inputs(pinner, claim.uses, params))
        outputs = {k: str(v) for k, v in builtin.outputs.items()}
    else:
        outputs = {k: str(v) for k, v in step.outputs.items()}
    key = cache_key(step, claim.uses, params, prints) if claim.cache else None
    task = StepTask(
        project=claim.project,
        project_id=claim.project_id,
        pipeline=claim.pipeline,
        run_id=claim.run_id,
        step=claim.step,
        step_run_id=claim.step_run_id,
        attempt=claim.attempt,
        uses=claim.uses,
        python=step.python,
        params=params,
        outputs=outputs,
        settings=settings,
        sys_path=sys_path,
        api_url=api_url,
        resources={} if step.resources is None else step.resources.model_dump(exclude_none=True),
    )
    return PreparedStep(task=task, inputs=params, cache_key=key)


def outputs_exist(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    task: StepTask,
    outputs: dict[str, Any],
) -> bool:
    """Whether cached outputs still name things that exist (a model version may have been
    deleted since): a cache entry that points at nothing is a miss."""
    from loopml.core.errors import NotFoundError

    pinner = _Pinner(store, artifacts, project)
    try:
        for name, kind in task.outputs.items():
            value = outputs.get(name)
            if ValueType(kind) in (
                ValueType.TABLE,
                ValueType.DATASET,
                ValueType.MODEL,
                ValueType.RUN,
            ):
                if not isinstance(value, str):
                    return False
                pinner.pin(ValueType(kind), value)
    except NotFoundError:
        return False
    return True
