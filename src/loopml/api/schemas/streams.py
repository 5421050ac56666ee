"""Bodies and answers of the stream routes."""

from __future__ import annotations

from typing import Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from loopml.core.lake import TABLE_NAME_PATTERN
from loopml.core.streams import MAX_TRANSFORM_CHARS, STREAM_NAME_PATTERN, Stream

_NAME: dict[str, Any] = {"pattern": STREAM_NAME_PATTERN.pattern}
_TABLE: dict[str, Any] = {"pattern": TABLE_NAME_PATTERN.pattern}


def stream_path() -> Any:
    """The ``{name}`` path parameter of a stream."""
    return Path(
        description="A stream name: a lowercase letter, then lowercase letters, digits, '_' "
        "or '-'.",
        max_length=63,
        json_schema_extra=_NAME,
    )


class StreamCreate(BaseModel):
    """Body of ``POST .../streams``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, json_schema_extra=_NAME)
    source: str = Field(
        max_length=500,
        description="nats://host:port (with `subject`) or redis://host:port/db?stream=key.",
    )
    subject: str | None = Field(
        default=None, max_length=200, description="The NATS subject (wildcards allowed)."
    )
    table: str = Field(max_length=63, json_schema_extra=_TABLE)
    dead_letter: str | None = Field(
        default=None,
        max_length=63,
        json_schema_extra=_TABLE,
        description="The dead-letter table (default `<table>__dead`).",
    )
    transform: str | None = Field(
        default=None,
        max_length=MAX_TRANSFORM_CHARS,
        description="One SELECT over `batch`, the micro-batch, run before the commit.",
    )
    batch_rows: int | None = Field(default=None, ge=1, le=1_000_000)
    batch_ms: int | None = Field(default=None, ge=1, le=600_000)
    redeliver_s: int | None = Field(
        default=None, ge=1, le=86_400, description="Redeliver what is not acked after this."
    )
    push: list[str] | None = Field(
        default=None,
        max_length=10,
        description="Feature views over `table` whose online store gets each batch's newest "
        "values per entity as it commits.",
    )


class StreamList(BaseModel):
    """A project's streams, by name."""

    items: list[Stream]
