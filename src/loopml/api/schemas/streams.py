"""Bodies and answers of the stream routes."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.streams import MAX_SPECS_CHARS, STREAM_NAME_PATTERN, Stream, StreamSpec

_NAME: dict[str, Any] = {"pattern": STREAM_NAME_PATTERN.pattern}


def stream_path() -> Any:
    """The ``{name}`` path parameter of a stream."""
    return Path(
        description="A stream name: a lowercase letter, then lowercase letters, digits, '_' "
        "or '-'.",
        max_length=63,
        json_schema_extra=_NAME,
    )


class StreamCreate(StreamSpec):
    """Body of ``POST .../streams``."""


class StreamsApply(BaseModel):
    """Body of ``POST .../streams/apply``: one stream's YAML (or JSON) definition, a list
    of them, or a mapping whose key ``streams`` holds that list."""

    model_config = ConfigDict(extra="forbid")

    spec: str = Field(min_length=1, max_length=MAX_SPECS_CHARS, description="The YAML.")


class StreamList(BaseModel):
    """A project's streams, by name."""

    items: list[Stream]
