"""Experiment tracking's domain types: experiments, runs, metric points, logged models and
the search spec. No I/O; the limits here are the ones every edge (API, SDK, store) enforces.

Metric values are finite floats or NaN (a diverged loss is worth recording); ``inf`` and
``-inf`` are refused, since no JSON carries them and no search can order by them. In JSON,
NaN travels as the string ``"NaN"``.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from loopml.core.errors import ValidationError

RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED", "LOST"]
"""RUNNING until the run ends: FINISHED, FAILED or KILLED as its code says, or LOST when its
heartbeat stops for longer than its timeout."""
RUN_STATUSES: tuple[RunStatus, ...] = ("RUNNING", "FINISHED", "FAILED", "KILLED", "LOST")
EndStatus = Literal["FINISHED", "FAILED", "KILLED"]
"""The statuses a run's own code may set."""

KEY_PATTERN = r"^[A-Za-z0-9_.\-/ ]{1,250}$"
"""Metric, param and tag keys: letters, digits, ``_ . - / `` and space, up to 250."""
_KEY = re.compile(KEY_PATTERN)
RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
EXPERIMENT_NAME_PATTERN = r"^[A-Za-z0-9_](?:[A-Za-z0-9_.\- ]{0,198}[A-Za-z0-9_.\-])?$"
_EXPERIMENT_NAME = re.compile(EXPERIMENT_NAME_PATTERN)
RUN_NAME_MAX = 200
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 5000
INPUT_REF_MAX = 300
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_INPUTS_PER_BATCH = 100
# Steps and timestamps stay below 2**53: JSON readers that hold numbers as doubles (browsers,
# schema validators) read larger integers inexactly.
MAX_STEP = 2**53 - 1


def validate_key(kind: str, key: str) -> str:
    """Return ``key`` if it is a valid metric, param or tag key, else ``ValidationError``."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValidationError(
            f"invalid {kind} key {repr(key)[:80]}: expected 1 to 250 letters, digits, "
            "'_', '.', '-', '/' or spaces, such as 'val/loss'",
            details={"field": f"{kind}s", "pattern": KEY_PATTERN},
        )
    return key


def validate_experiment_name(name: str) -> str:
    """Return ``name`` if it is a valid experiment name, else ``ValidationError``."""
    if not isinstance(name, str) or not _EXPERIMENT_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid experiment name {repr(name)[:80]}: expected 1 to 200 letters, digits, "
            "'_', '.', '-' or inner spaces, starting with a letter, digit or '_', such as "
            "'churn-v2' or 'churn model'",
            details={"field": "experiment", "pattern": EXPERIMENT_NAME_PATTERN},
        )
    return name


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it looks like a run id (32 lowercase hex characters)."""
    if not isinstance(run_id, str) or not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise ValidationError(
            f"invalid run id {repr(run_id)[:80]}: expected 32 lowercase hex characters",
            details={"field": "run_id"},
        )
    return run_id


def _finite_or_nan(value: float) -> float:
    if math.isinf(value):
        raise ValueError("metric values must be finite or NaN; infinity is refused")
    return value


def whole_number(value: Any) -> Any:
    """A whole float as an int (JSON Schema counts 76.0 as an integer); anything else as is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(whole_number)]
"""An integer that may arrive as a whole JSON float (``76.0``), never as text."""


def _nan_from_text(value: Any) -> Any:
    return float("nan") if value == "NaN" else value


def _nan_as_text(value: float) -> float | str:
    return "NaN" if math.isnan(value) else value


MetricValue = Annotated[
    float,
    BeforeValidator(_nan_from_text),
    Field(strict=True),
    AfterValidator(_finite_or_nan),
    PlainSerializer(_nan_as_text, return_type=float | str, when_used="json"),
]
"""A finite float or NaN; NaN is written ``"NaN"`` in JSON and read back from it."""


Key = Annotated[str, Field(pattern=KEY_PATTERN, max_length=250)]
KEYS_SCHEMA: dict[str, Any] = {"propertyNames": {"pattern": KEY_PATTERN, "maxLength": 250}}
ParamValue = Annotated[str, Field(max_length=PARAM_VALUE_MAX)]
TagValue = Annotated[str, Field(max_length=TAG_VALUE_MAX)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Body(BaseModel):
    # Strict: a request body's "1" is not the number 1, nor "yes" a boolean, so what the API
    # accepts is exactly what its schema documents.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Experiment(_Frozen):
    """A named group of runs inside a project."""

    id: str
    project: str
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    """MLflow's experiment tags."""


class RunInput(_Body):
    """Something a run consumed, by reference: ``kind='dataset'``, ``ref`` a snapshot id."""

    kind: str = Field(default="dataset", pattern=r"^[a-z][a-z0-9_]{0,49}$")
    ref: str = Field(min_length=1, max_length=INPUT_REF_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")
    details: dict[Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=1000)]] = (
        Field(default_factory=dict, max_length=20)
    )


class MetricPoint(_Body):
    """One point of a metric's history; NaN may be sent as the string ``"NaN"``."""

    key: Key
    value: MetricValue
    step: JsonInt = Field(default=0, ge=0, le=MAX_STEP)
    timestamp_ms: JsonInt = Field(ge=0, le=MAX_STEP, description="Milliseconds since the epoch.")


class Run(_Frozen):
    """One training run.

    ``params``, ``metrics`` (the latest value of each) and ``tags`` are filled only when
    asked for (``None`` otherwise), so a listing pays for what it shows.
    """

    id: str
    project: str
    experiment: str
    name: str
    status: RunStatus
    start_time: datetime
    end_time: datetime | None
    heartbeat_at: datetime
    heartbeat_timeout_s: int
    code_version: dict[str, Any]
    actor: str
    parent_run_id: str | None = None
    children: int | None = Field(
        default=None,
        description="How many child runs it has (AutoML trials), when a search folds them.",
    )
    deleted_at: datetime | None = Field(
        default=None, description="When the run was soft-deleted (MLflow's delete-run)."
    )
    params: dict[str, str] | None = None
    metrics: dict[str, MetricValue] | None = None
    tags: dict[str, str] | None = None
    inputs: list[RunInput] | None = None


class LogBatch(_Body):
    """What one ``log-batch`` call writes, in one transaction."""

    params: dict[Key, ParamValue] = Field(
        default_factory=dict, max_length=MAX_PARAMS_PER_BATCH, json_schema_extra=KEYS_SCHEMA
    )
    metrics: list[MetricPoint] = Field(default_factory=list, max_length=MAX_METRICS_PER_BATCH)
    tags: dict[Key, TagValue] = Field(
        default_factory=dict, max_length=MAX_TAGS_PER_BATCH, json_schema_extra=KEYS_SCHEMA
    )
    inputs: list[RunInput] = Field(default_factory=list, max_length=MAX_INPUTS_PER_BATCH)


def parse_batch(data: dict[str, Any]) -> LogBatch:
    """``data`` as a ``LogBatch``, or a ``ValidationError`` naming what is wrong."""
    try:
        return LogBatch.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)[:5]
        summary = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors
        )
        raise ValidationError(
            f"invalid log batch: {summary} (limits: {MAX_PARAMS_PER_BATCH} params, "
            f"{MAX_METRICS_PER_BATCH} metric points, {MAX_TAGS_PER_BATCH} tags per batch)",
            details={
                "errors": [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in errors]
            },
        ) from exc


class LoggedModel(_Frozen):
    """A model a run logged: a package under the run's artifacts at ``path``."""

    id: str
    run_id: str
    path: str
    flavor: str
    format: str
    manifest_sha256: str
    signature: dict[str, Any]
    summary: dict[str, Any]
    created_at: datetime
