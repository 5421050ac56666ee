"""Pipelines as the rest of loopml sees them: names, statuses, versions, runs and step runs.

A pipeline is a named workflow spec (YAML, see ``loopml.pipelines.spec``); each apply that
changes it is a new ``PipelineVersion``. A ``PipelineRun`` instantiates one version's DAG
with its inputs; each step becomes a ``StepRun`` that workers claim from the metadata DB.
No I/O here.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import NotFoundError, ValidationError

PIPELINE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
STEP_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""Step, input and output names: they appear in references (``steps.train.outputs.model``)."""
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
MAX_SPEC_CHARS = 200_000


class RunStatus(StrEnum):
    """Where a pipeline run is. ``CANCELLING`` waits for its running steps to stop."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        """Whether the run reached its end (nothing about it changes any more)."""
        return self in _RUN_FINAL


_RUN_FINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(StrEnum):
    """Where a step of a run is.

    ``PENDING`` waits for the steps it references; ``QUEUED`` may be claimed by a worker
    (once its ``next_attempt_at`` has come, for a retry after backoff); ``CACHED`` finished
    by reusing the outputs of an earlier identical step; ``SKIPPED`` never ran because a
    step it needs failed, was cancelled or was skipped, or because its condition (``if``)
    was false.
    """

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    CACHED = "CACHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    @property
    def finished(self) -> bool:
        """Whether the step reached its end."""
        return self in _STEP_FINAL

    @property
    def done(self) -> bool:
        """Whether the step has outputs its dependents may use."""
        return self in (StepStatus.SUCCEEDED, StepStatus.CACHED)


_STEP_FINAL = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.CACHED,
        StepStatus.FAILED,
        StepStatus.CANCELLED,
        StepStatus.SKIPPED,
    }
)


class AttemptStatus(StrEnum):
    """How one attempt at a step ended (``RUNNING`` while it has a live lease)."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    LOST = "LOST"
    CANCELLED = "CANCELLED"
    RELEASED = "RELEASED"


class SpecError(ValidationError):
    """A pipeline spec was refused; ``details["problems"]`` lists each problem as
    ``{"line", "path", "message"}``."""

    code = "invalid_pipeline_spec"


def pipeline_prefix(project_id: str, run_id: str) -> str:
    """Where a pipeline run's files live in the artifact store (logs, step files)."""
    return f"projects/{project_id}/pipelines/{run_id}"


def attempt_prefix(project_id: str, run_id: str, step: str, attempt: int) -> str:
    """One attempt's folder: a stale attempt never writes where the live one does."""
    return f"{pipeline_prefix(project_id, run_id)}/{step}/attempt-{attempt:03d}"


def log_key(project_id: str, run_id: str, step: str, attempt: int) -> str:
    """The key of an attempt's captured log (stdout, stderr and logging)."""
    return f"{attempt_prefix(project_id, run_id, step, attempt)}/step.log"


def validate_pipeline_name(name: str) -> str:
    """Return ``name`` if it is a valid pipeline name, else raise ``ValidationError``."""
    if not isinstance(name, str) or not PIPELINE_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid pipeline name {repr(name)[:80]}: expected a lowercase letter followed by "
            "up to 62 lowercase letters, digits, '_' or '-' (for example 'churn-retrain')",
            details={"field": "name", "pattern": PIPELINE_NAME_PATTERN.pattern},
        )
    return name


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it looks like a pipeline run id (32 lowercase hex characters)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValidationError(
            f"invalid pipeline run id {repr(run_id)[:80]}: expected 32 lowercase hex "
            "characters, as `loopml pipelines runs` shows them",
            details={"field": "run", "pattern": RUN_ID_PATTERN.pattern},
        )
    return run_id


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class StepError(_Frozen):
    """Why a step attempt failed.

    Attributes:
        type: the exception's class name.
        code: loopml's error code, when it was a loopml error.
        message: what went wrong.
        retryable: whether the failure may pass on a retry (a lost database, a crash) or
            not (a validation error, a refused promotion).
        origin: ``user_code`` when the step's own code raised, ``platform`` otherwise.
        traceback: the end of the traceback, when there is one.
    """

    type: str
    code: str | None = None
    message: str
    retryable: bool
    origin: str = "platform"
    traceback: str | None = None


class PipelineVersion(_Frozen):
    """One applied version of a pipeline: the spec text as given, and its identity hash."""

    pipeline: str
    version: int
    spec_hash: str = Field(description="SHA-256 of the normalized spec (not of the text).")
    spec: str = Field(description="The YAML as it was applied.")
    steps: list[str] = Field(description="The step names, in a topological order.")
    actor: str
    created_at: datetime


class Pipeline(_Frozen):
    """A named pipeline of a project and its newest version."""

    id: str
    project: str
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


class PipelineApplied(_Frozen):
    """What an apply did: the version now current, and whether it is new."""

    pipeline: Pipeline
    version: PipelineVersion
    created: bool
    warnings: list[str] = Field(
        default_factory=list,
        description="What was accepted unchecked (a step's resources when no worker had "
        "reported its nodes lately).",
    )


class StepAttempt(_Frozen):
    """One attempt at a step: who ran it, when, how it ended, and where its log is."""

    attempt: int
    worker: str
    status: AttemptStatus
    started_at: datetime
    finished_at: datetime | None = None
    error: StepError | None = None
    log_key: str | None = None


class StepRun(_Frozen):
    """One step of a pipeline run.

    Attributes:
        uses: the built-in it runs, or ``python`` for a ``module:function`` step.
        needs: the steps it waits for.
        inputs: its ``with`` values as resolved for its last attempt (references replaced,
            tables pinned to versions): its lineage.
        outputs: what it produced (typed values), once SUCCEEDED or CACHED.
        cache_key: the key its outputs are cached under (when caching is on).
        cached_from: the step run whose outputs a CACHED step reused.
        attempt: the number of its current or last attempt (0 before the first claim).
        failures: how many attempts failed (the retry policy counts these).
    """

    id: str
    name: str
    uses: str
    status: StepStatus
    needs: list[str]
    attempt: int
    failures: int
    max_retries: int
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: StepError | None = None
    cache_key: str | None = None
    cached_from: str | None = None
    next_attempt_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: list[StepAttempt] = Field(default_factory=list)


class PipelineRun(_Frozen):
    """One run of a pipeline version; ``steps`` is filled when a single run is read."""

    id: str
    project: str
    pipeline: str
    version: int
    status: RunStatus
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    error: str | None = None
    actor: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[StepRun] | None = None


CURSOR_PATTERN = re.compile(r"^[0-9]{1,17}-[0-9a-f]{32}$")
"""A runs cursor: the last run's creation time (microseconds) and id."""


def pipeline_not_found(project: str, name: str) -> NotFoundError:
    """The error for a pipeline the project does not have, with the command that adds one."""
    return NotFoundError(
        f"pipeline {name!r} not found in project {project!r}: apply its spec first with "
        "`loopml pipelines apply FILE`",
        details={"project": project, "pipeline": name},
    )
