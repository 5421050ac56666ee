"""SQL over a project's lake tables through the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from loopml.client._http import Http, segment

if TYPE_CHECKING:
    import pyarrow as pa

NEXT_OFFSET_HEADER = "X-Loopml-Next-Offset"


@dataclass
class SqlResult:
    """One page of a query's answer.

    Attributes:
        format: the format asked for: ``json``, ``csv`` or ``arrow``.
        columns: ``(name, DuckDB type)`` of each column (JSON format only).
        rows: each row's values in column order (JSON format only).
        next_offset: the ``offset`` of the next page; ``None`` on the last page.
        content: the raw answer (CSV text as bytes, or an Arrow IPC stream).
        tables: the tables read, such as ``churn@3`` (JSON format only).
    """

    format: str
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    next_offset: int | None = None
    content: bytes = b""
    tables: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The CSV answer as text."""
        return self.content.decode("utf-8")

    def to_arrow(self) -> pa.Table:
        """The rows as an Arrow table (an ``arrow``-format answer; JSON falls back to values)."""
        import pyarrow as pa

        if self.format == "arrow":
            with pa.ipc.open_stream(self.content) as reader:
                return reader.read_all()
        names = [name for name, _ in self.columns]
        return pa.table({n: [row[i] for row in self.rows] for i, n in enumerate(names)})

    def records(self) -> list[dict[str, Any]]:
        """The JSON rows as dictionaries keyed by column name."""
        names = [name for name, _ in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


class Sql:
    """``client.sql(project, query)``: read-only DuckDB SQL over a project's tables."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def __call__(
        self,
        project: str,
        query: str,
        *,
        limit: int = 1000,
        offset: int = 0,
        timeout_s: float = 30.0,
        format: Literal["json", "csv", "arrow"] = "json",
    ) -> SqlResult:
        """Run one SELECT; tables by name (``churn``) or past version (``churn@3``).

        Example:
            >>> client.sql("default", "SELECT count(*) FROM churn").rows
            [[1000]]
        """
        body = {
            "query": query,
            "limit": limit,
            "offset": offset,
            "timeout_s": timeout_s,
            "format": format,
        }
        # The server may run the query for up to timeout_s; wait a little longer for it (as a
        # request extension, which every httpx client, test clients included, honours).
        wait = httpx.Timeout(timeout_s + 30, connect=10).as_dict()
        response = self._http.request(
            "POST",
            f"/api/v1/projects/{segment(project)}/sql",
            json=body,
            extensions={"timeout": wait},
        )
        if format != "json":
            next_offset = response.headers.get(NEXT_OFFSET_HEADER)
            return SqlResult(
                format=format,
                next_offset=int(next_offset) if next_offset else None,
                content=response.content,
            )
        data = response.json()
        return SqlResult(
            format=format,
            columns=[(c["name"], c["type"]) for c in data["columns"]],
            rows=data["rows"],
            next_offset=data["next_offset"],
            tables=data["tables"],
        )
