"""Request and response bodies of ``POST /api/v1/projects/{project}/sql``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loopml.data.warehouse import (
    DEFAULT_LIMIT,
    DEFAULT_TIMEOUT_S,
    MAX_LIMIT,
    MAX_QUERY_CHARS,
    MAX_TIMEOUT_S,
)

MAX_OFFSET = 10**12
SqlFormat = Literal["json", "csv", "arrow"]


class SqlQuery(BaseModel):
    """Body of ``POST /api/v1/projects/{project}/sql``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="One read-only SELECT; tables by name (churn) or past version (churn@3).",
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Most rows.")
    offset: int = Field(
        default=0,
        ge=0,
        le=MAX_OFFSET,
        description="Rows to skip: the next_offset of the previous page. Pages are stable "
        "only for a query with a total ORDER BY over pinned versions (churn@3).",
    )
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="The query is stopped after this many seconds (code 'query_timeout').",
    )
    format: SqlFormat = Field(
        default="json",
        description="json (this body), csv (text/csv) or arrow (an Arrow IPC stream).",
    )


class SqlColumn(BaseModel):
    """A result column: its name and DuckDB type (``BIGINT``, ``DECIMAL(10,2)``, ...)."""

    name: str
    type: str


class SqlResult(BaseModel):
    """One page of a query's rows, as JSON.

    Values: decimals and 128-bit integers as strings, dates and times ISO 8601, ``NaN`` and
    infinities as ``null``, durations as seconds, binary as base64.
    """

    columns: list[SqlColumn]
    rows: list[list[Any]] = Field(description="Each row's values, in column order.")
    row_count: int = Field(description="Rows in this page.")
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null at the end.")
    tables: list[str] = Field(description="The tables read, such as churn or churn@3.")
    elapsed_ms: float
