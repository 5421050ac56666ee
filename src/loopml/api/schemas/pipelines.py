"""Request and response bodies of the pipelines routes."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.pipelines import (
    MAX_SPEC_CHARS,
    PIPELINE_NAME_PATTERN,
    RUN_ID_PATTERN,
    STEP_NAME_PATTERN,
    Pipeline,
    PipelineRun,
    PipelineVersion,
)
from loopml.core.refs import MAX_VERSION

MAX_INPUTS = 100


def pipeline_path() -> Any:
    """The ``{name}`` path parameter of a pipeline, documented with the name rule."""
    return Path(
        description="A pipeline name: a lowercase letter, then lowercase letters, digits, '_' "
        "or '-'.",
        max_length=63,
        json_schema_extra={"pattern": PIPELINE_NAME_PATTERN.pattern},
    )


def run_path() -> Any:
    """The ``{run_id}`` path parameter of a pipeline run."""
    return Path(
        description="A pipeline run's id (32 lowercase hex characters).",
        min_length=32,
        max_length=32,
        pattern=RUN_ID_PATTERN.pattern,
    )


def step_path() -> Any:
    """The ``{step}`` path parameter: a step's name in its spec."""
    return Path(
        description="A step's name.",
        max_length=63,
        json_schema_extra={"pattern": STEP_NAME_PATTERN.pattern},
    )


class PipelineApply(BaseModel):
    """Body of ``POST .../pipelines``: a spec's YAML text (its ``name`` names the pipeline)."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(
        min_length=1,
        max_length=MAX_SPEC_CHARS,
        description="The workflow spec as YAML (see docs/pipelines.md).",
    )


class RunRequest(BaseModel):
    """Body of ``POST .../pipelines/{name}/runs``."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_INPUTS,
        description="Input values by name; left-out inputs take their defaults, and text is "
        "read as the input's type ('30' for a number).",
    )
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="The version to run; the newest if omitted."
    )


class PipelineList(BaseModel):
    """A project's pipelines, by name."""

    items: list[Pipeline]


class PipelineDetail(BaseModel):
    """A pipeline and one of its versions (the newest unless asked otherwise)."""

    pipeline: Pipeline
    version: PipelineVersion


class PipelineRunPage(BaseModel):
    """Runs, newest first; pass ``next_cursor`` for the next page."""

    items: list[PipelineRun]
    next_cursor: str | None = None
