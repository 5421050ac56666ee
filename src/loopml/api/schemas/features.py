"""Bodies and answers of the feature store routes."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.datasets import DATASET_REF_PATTERN, Part, SplitSpec
from loopml.core.features import (
    COLUMN_PATTERN,
    MAX_SPEC_CHARS,
    VIEW_NAME_PATTERN,
    FeatureView,
    OnlineFeatures,
)
from loopml.data.features.materialize import MAX_READ_ENTITIES
from loopml.data.features.offline import MAX_VIEWS

_NAME: dict[str, Any] = {"pattern": VIEW_NAME_PATTERN.pattern}


def view_path() -> Any:
    """The ``{view}`` path parameter of a feature view."""
    return Path(
        description="A feature view name: a lowercase letter, then lowercase letters, digits "
        "or '_'.",
        max_length=63,
        json_schema_extra=_NAME,
    )


class FeatureViewApply(BaseModel):
    """Body of ``POST .../features/views``: the spec as YAML (or JSON) text."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(min_length=1, max_length=MAX_SPEC_CHARS, description="The YAML spec.")


class FeatureViewList(BaseModel):
    """A project's feature views at their newest versions."""

    items: list[FeatureView]


class TrainingSetCreate(BaseModel):
    """Body of ``POST .../features/training-sets``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(max_length=63, description="The dataset the result is a version of.")
    entities: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SPEC_CHARS,
        description="The entity table: a lake table (`labels`, `labels@2`) or one SELECT "
        "(or give `entities_dataset`).",
    )
    entities_dataset: str | None = Field(
        default=None,
        max_length=80,
        json_schema_extra={"pattern": DATASET_REF_PATTERN.pattern},
        description="Instead of `entities`: a dataset version, `labels` (the newest) or "
        "`labels@3`, read verified against its hash.",
    )
    entities_part: Part = Field(
        default="all",
        description="With `entities_dataset`: `train` or `eval` of its frozen split.",
    )
    views: list[str] = Field(min_length=1, max_length=MAX_VIEWS)
    event_time: str = Field(
        default="event_time",
        max_length=128,
        json_schema_extra={"pattern": COLUMN_PATTERN.pattern},
        description="The entity table's time column.",
    )
    description: str = Field(default="", max_length=2000)
    split: SplitSpec | None = Field(default=None, description="Freeze a train/eval split.")


class MaterializeRequest(BaseModel):
    """Body of ``POST .../features/views/{view}/materialize``."""

    model_config = ConfigDict(extra="forbid")

    full: bool = Field(default=False, description="Read the whole source, not only new rows.")


class OnlineRead(BaseModel):
    """Body of ``POST .../features/{view}/search``: the entities to read, each a dict of keys."""

    model_config = ConfigDict(extra="forbid")

    entities: list[dict[str, str | int | float | bool]] = Field(
        min_length=1, max_length=MAX_READ_ENTITIES
    )


class OnlineAnswer(BaseModel):
    """The online values of each entity asked for, in order."""

    view: str
    items: list[OnlineFeatures]
