"""Request and response bodies of the dataset routes (the domain types of
``core.datasets`` are the answers)."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.datasets import (
    DATASET_NAME_PATTERN,
    MAX_DESCRIPTION,
    VERSION_PATTERN,
    Dataset,
    DatasetVersionInfo,
    SplitSpec,
)
from loopml.data.warehouse import DEFAULT_TIMEOUT_S, MAX_QUERY_CHARS, MAX_TIMEOUT_S


def dataset_path() -> Any:
    """The ``{name}`` path parameter, documented with the name rule."""
    return Path(
        description="A dataset name: a lowercase letter, then lowercase letters, digits or '_'.",
        max_length=63,
        json_schema_extra={"pattern": DATASET_NAME_PATTERN.pattern},
    )


def version_path() -> Any:
    """The ``{version}`` path parameter: a number from 1, or ``latest``."""
    return Path(
        description="A version number, or 'latest'.",
        max_length=9,
        json_schema_extra={"pattern": VERSION_PATTERN},
    )


class DatasetCreate(BaseModel):
    """Body of ``POST .../datasets``: snapshot a source as the dataset's next version."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str = Field(
        max_length=63,
        description="The dataset; created with its first version.",
        json_schema_extra={"pattern": DATASET_NAME_PATTERN.pattern},
    )
    source: str = Field(
        alias="from",
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="A table ('churn'), a table version ('churn@3') or one SELECT over the "
        "project's tables; every table read is pinned to the version read.",
    )
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    split: SplitSpec | None = Field(
        default=None, description="Freeze a train/eval split of the new version at once."
    )
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="The query is stopped after this many seconds (code 'query_timeout').",
    )


class DatasetList(BaseModel):
    """A project's datasets by name; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Dataset]
    next_cursor: str | None = None


class VersionList(BaseModel):
    """A dataset's versions, newest first; pass ``next_cursor`` as ``cursor`` for more."""

    items: list[DatasetVersionInfo]
    next_cursor: str | None = None
