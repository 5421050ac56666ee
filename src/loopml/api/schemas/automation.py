"""Request and response bodies of the schedules and triggers routes."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.automation import (
    AUTOMATION_NAME_PATTERN,
    MAX_CRON_CHARS,
    MAX_MIN_ROWS,
    MAX_ZONE_CHARS,
    TRIGGER_ID_PATTERN,
    Concurrency,
    Firing,
    Schedule,
    Trigger,
    TriggerOn,
)
from loopml.core.pipelines import PIPELINE_NAME_PATTERN

MAX_INPUTS = 100
MAX_WHERE = 4
_NAME: dict[str, Any] = {"pattern": AUTOMATION_NAME_PATTERN.pattern}
_PIPELINE: dict[str, Any] = {"pattern": PIPELINE_NAME_PATTERN.pattern}
_CRON = "A 5-field cron expression: minute hour day-of-month month day-of-week ('0 3 * * *')."
_ZONE = "An IANA time zone the cron is read in ('UTC', 'Europe/Paris')."
_INPUTS = "Input values of each run by name; checked against the pipeline's newest spec."
_POLICY = "While a run it started is active: `skip` starts nothing, `queue` lets one wait."
_WHERE = (
    "Filters on the event: `table` for table.appended, `model` for model.version.registered "
    "and gate.failed, `model` or `deployment` for drift.detected, drift.labelled and "
    "quality.degraded; none for webhook."
)


def automation_path(kind: str) -> Any:
    """The ``{name}`` path parameter of a schedule or trigger."""
    return Path(
        description=f"A {kind} name: a lowercase letter, then lowercase letters, digits, '_' "
        "or '-'.",
        max_length=63,
        json_schema_extra=_NAME,
    )


def trigger_id_path() -> Any:
    """The ``{trigger_id}`` path parameter of the webhook route."""
    return Path(
        description="A trigger's id (32 lowercase hex characters).",
        min_length=32,
        max_length=32,
        pattern=TRIGGER_ID_PATTERN.pattern,
    )


class ScheduleCreate(BaseModel):
    """Body of ``POST .../schedules``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, json_schema_extra=_NAME)
    pipeline: str = Field(max_length=63, json_schema_extra=_PIPELINE)
    cron: str = Field(min_length=1, max_length=MAX_CRON_CHARS, description=_CRON)
    timezone: str = Field(default="UTC", min_length=1, max_length=MAX_ZONE_CHARS, description=_ZONE)
    inputs: dict[str, Any] = Field(default_factory=dict, max_length=MAX_INPUTS, description=_INPUTS)
    concurrency: Concurrency = Field(default=Concurrency.SKIP, description=_POLICY)
    enabled: bool = True


class SchedulePatch(BaseModel):
    """Body of ``PATCH .../schedules/{name}``: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    cron: str | None = Field(
        default=None, min_length=1, max_length=MAX_CRON_CHARS, description=_CRON
    )
    timezone: str | None = Field(default=None, min_length=1, max_length=MAX_ZONE_CHARS)
    inputs: dict[str, Any] | None = Field(default=None, max_length=MAX_INPUTS)
    concurrency: Concurrency | None = None


class TriggerCreate(BaseModel):
    """Body of ``POST .../triggers``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, json_schema_extra=_NAME)
    pipeline: str = Field(max_length=63, json_schema_extra=_PIPELINE)
    on: TriggerOn = Field(description="The event type that fires it, or `webhook`.")
    where: dict[str, str] = Field(default_factory=dict, max_length=MAX_WHERE, description=_WHERE)
    min_rows: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MIN_ROWS,
        description="table.appended only: fire once this many rows were appended (counted "
        "across appends; the count restarts at each firing).",
    )
    inputs: dict[str, Any] = Field(default_factory=dict, max_length=MAX_INPUTS, description=_INPUTS)
    concurrency: Concurrency = Field(default=Concurrency.SKIP, description=_POLICY)
    enabled: bool = True


class TriggerPatch(BaseModel):
    """Body of ``PATCH .../triggers/{name}``: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    where: dict[str, str] | None = Field(default=None, max_length=MAX_WHERE, description=_WHERE)
    min_rows: int | None = Field(default=None, ge=1, le=MAX_MIN_ROWS)
    inputs: dict[str, Any] | None = Field(default=None, max_length=MAX_INPUTS)
    concurrency: Concurrency | None = None


class ScheduleList(BaseModel):
    """A project's schedules, by name."""

    items: list[Schedule]


class TriggerList(BaseModel):
    """A project's triggers, by name."""

    items: list[Trigger]


class FiringList(BaseModel):
    """Firings of a schedule or trigger, newest first."""

    items: list[Firing]


class FireResult(BaseModel):
    """What a webhook call did: the run it started, or why it started none."""

    outcome: str
    run_id: str | None = None
    skipped: str | None = None
    queued: str | None = None
