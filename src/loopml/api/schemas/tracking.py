"""Request bodies of the tracking API (experiments, runs). Responses are the domain objects
of ``core.runs``; a log batch and a search spec are ``core`` models used as bodies as is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from loopml.core.keys import KEY_PATTERN as ARTIFACT_KEY_PATTERN
from loopml.core.run_search import RunSearch as RunSearch
from loopml.core.runs import (
    EXPERIMENT_NAME_PATTERN,
    KEYS_SCHEMA,
    MAX_INPUTS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
    RUN_ID_PATTERN,
    EndStatus,
    Key,
    ParamValue,
    RunInput,
    TagValue,
    whole_number,
)
from loopml.core.runs import LogBatch as LogBatch


class _Request(BaseModel):
    # Strict: "1" is not a number nor "yes" a boolean; the API accepts what its schema says.
    model_config = ConfigDict(extra="forbid", strict=True)


def run_id_path() -> Any:
    """The ``{run_id}`` path parameter, documented with its rule."""
    return Path(
        description="A run id: 32 lowercase hex characters.",
        max_length=32,
        json_schema_extra={"pattern": RUN_ID_PATTERN},
    )


def experiment_path() -> Any:
    """The ``{name}`` of an experiment, documented with its rule."""
    return Path(
        description="An experiment name.",
        max_length=200,
        json_schema_extra={"pattern": EXPERIMENT_NAME_PATTERN},
    )


class ExperimentCreate(_Request):
    """Body of ``POST /api/v1/projects/{project}/experiments``."""

    name: str = Field(max_length=200, pattern=EXPERIMENT_NAME_PATTERN)
    description: str = Field(default="", max_length=4000)


class RunCreate(_Request):
    """Body of ``POST /api/v1/projects/{project}/runs``."""

    experiment: str = Field(max_length=200, pattern=EXPERIMENT_NAME_PATTERN)
    create_experiment: bool = Field(
        default=True, description="Create the experiment first when it does not exist."
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    heartbeat_timeout_s: (
        Annotated[int, Field(ge=1, le=86_400), BeforeValidator(whole_number)] | None
    ) = Field(
        default=None,
        description="Mark the run LOST after this long without a heartbeat; default: the "
        "server's tracking.heartbeat_timeout_s.",
    )
    code_version: dict[str, str | bool | None] = Field(default_factory=dict, max_length=20)
    parent_run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    params: dict[Key, ParamValue] = Field(
        default_factory=dict, max_length=MAX_PARAMS_PER_BATCH, json_schema_extra=KEYS_SCHEMA
    )
    tags: dict[Key, TagValue] = Field(
        default_factory=dict, max_length=MAX_TAGS_PER_BATCH, json_schema_extra=KEYS_SCHEMA
    )
    inputs: list[RunInput] = Field(default_factory=list, max_length=MAX_INPUTS_PER_BATCH)


class RunUpdate(_Request):
    """Body of ``PATCH /api/v1/projects/{project}/runs/{run_id}``: end the run."""

    status: EndStatus


class LoggedModelCreate(_Request):
    """Body of ``POST /api/v1/projects/{project}/runs/{run_id}/models``."""

    path: str = Field(max_length=500, json_schema_extra={"pattern": ARTIFACT_KEY_PATTERN})
    flavor: str = Field(min_length=1, max_length=50)
    format: str = Field(min_length=1, max_length=20)
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: dict[str, Any]
    summary: dict[str, Any] = Field(default_factory=dict)
