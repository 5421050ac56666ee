"""Request bodies and path/query parameters of the model registry routes.

Every rule is enforced by loopml's own validators (their messages say how to fix a value);
declaring the same rules here tells generated clients and fuzzers what is accepted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from loopml.core.gate import MAX_REASON
from loopml.core.keys import KEY_PATTERN
from loopml.core.refs import LOCAL_REF_PATTERN, MAX_REF_LENGTH, MAX_VERSION, NAME_PATTERN
from loopml.core.registry import MAX_DESCRIPTION, MAX_TAG_VALUE, MAX_TAGS, TAG_KEY_PATTERN

_NAME: dict[str, Any] = {"pattern": NAME_PATTERN.pattern}
_TAG_KEY: dict[str, Any] = {"pattern": TAG_KEY_PATTERN.pattern}
RUN_ID_PATTERN = r"^[0-9a-f]{32}$"


def model_path() -> Any:
    """The ``{model}`` path parameter: a registered model's name."""
    return Path(description="A registered model's name.", max_length=63, json_schema_extra=_NAME)


def version_path() -> Any:
    """The ``{version}`` path parameter: a version number."""
    return Path(description="A version number.", ge=1, le=MAX_VERSION)


def alias_path() -> Any:
    """The ``{alias}`` path parameter."""
    return Path(description="An alias, such as 'champion'.", max_length=63, json_schema_extra=_NAME)


def tag_key_path() -> Any:
    """The ``{key}`` path parameter of a tag."""
    return Path(description="A tag key.", max_length=250, json_schema_extra=_TAG_KEY)


def ref_path() -> Any:
    """The ``{ref}`` path parameter: a ``ModelRef`` such as ``churn@champion``."""
    return Path(
        description="'name' (newest READY version), 'name/VERSION' or 'name@alias'; the "
        "project is the one in the URL.",
        max_length=MAX_REF_LENGTH,
        json_schema_extra={"pattern": LOCAL_REF_PATTERN.pattern},
    )


def cursor_query(max_length: int, pattern: str) -> Any:
    """An optional ``cursor`` query parameter."""
    return Query(
        default=None,
        max_length=max_length,
        description="The next_cursor of the previous page.",
        pattern=pattern,
    )


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN.pattern)]
TagValue = Annotated[str, Field(max_length=MAX_TAG_VALUE)]


class ModelCreate(_Request):
    """Body of ``POST /api/v1/projects/{project}/models``."""

    name: str = Field(
        max_length=63, description="Lowercase letters, digits, '_' or '-'.", json_schema_extra=_NAME
    )
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_TAGS,
        description=f"At most {MAX_TAGS}; keys {TAG_KEY_PATTERN.pattern}, values at most "
        f"{MAX_TAG_VALUE} characters.",
        json_schema_extra={"additionalProperties": False},
    )


class DescriptionUpdate(_Request):
    """Body of ``PATCH`` on a model or a version."""

    description: str = Field(max_length=MAX_DESCRIPTION)


class VersionCreate(_Request):
    """Body of ``POST .../models/{model}/versions``: register what a run logged."""

    run_id: str = Field(description="The run's id.", json_schema_extra={"pattern": RUN_ID_PATTERN})
    path: str = Field(
        default="model",
        max_length=500,
        description="Where in the run's artifacts the model was logged.",
        json_schema_extra={"pattern": KEY_PATTERN},
    )
    description: str = Field(default="", max_length=MAX_DESCRIPTION)


class AliasSet(_Request):
    """Body of ``PUT .../models/{model}/aliases/{alias}``."""

    version: int = Field(ge=1, le=MAX_VERSION, description="The READY version to point at.")
    force_reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REASON,
        pattern=r"[^ \t\r\n]",
        description="Move `champion` even though the gate did not pass this version, for "
        "this reason; recorded as a `model.promotion.forced` event with the actor.",
    )


class TagSet(_Request):
    """Body of ``PUT .../tags/{key}``."""

    value: str = Field(max_length=MAX_TAG_VALUE)
