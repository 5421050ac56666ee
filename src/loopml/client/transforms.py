"""A project's SQL transforms through the API: define, apply, list, runs, lineage."""

from __future__ import annotations

import builtins
from typing import Any

import httpx

from loopml.client._http import Http, segment
from loopml.core.transforms import Transform, TransformLineage, TransformRun
from loopml.core.types import Page


def _path(project: str, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/transforms"
    if name:
        base = f"{base}/{segment(name)}"
    return f"{base}/{tail}" if tail else base


def _fields(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class Transforms:
    """``client.transforms``: named SQL transforms that materialize lake tables.

    Example:
        >>> run = client.transforms.apply(
        ...     "shop", "daily", sql="SELECT day, sum(amount) AS total FROM sales GROUP BY day",
        ...     into="daily_sales")
        >>> [str(i) for i in run.inputs], run.output_version   # (['sales@4'], 0)
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def define(
        self,
        project: str,
        name: str,
        *,
        sql: str,
        into: str,
        mode: str | None = None,
        description: str | None = None,
    ) -> Transform:
        """Define a transform, or change it, without running it (``mode`` and
        ``description`` keep their values when ``None``).

        Raises:
            ValidationError: a bad name or table, or SQL the sandbox refuses.
        """
        body = _fields(sql=sql, into=into, mode=mode, description=description)
        return Transform.model_validate(self._http.json("PUT", _path(project, name), json=body))

    def apply(
        self,
        project: str,
        name: str,
        *,
        sql: str | None = None,
        into: str | None = None,
        mode: str | None = None,
        description: str | None = None,
        timeout_s: float = 30.0,
    ) -> TransformRun:
        """Run a transform and return the run: its input versions, output version and rows.

        The first apply defines it and needs ``sql`` and ``into``; later, each field given
        changes the definition, and none re-runs the saved one.

        Raises:
            ValidationError: SQL refused or failing, or a result the table refuses.
            NotFoundError: no such project, transform, or table the SQL reads.
            QueryTimeoutError: the query ran past ``timeout_s``.
        """
        body = _fields(sql=sql, into=into, mode=mode, description=description)
        body["timeout_s"] = timeout_s
        # The server runs the query for up to timeout_s, then writes the table: wait for it.
        wait = httpx.Timeout(timeout_s + 120, connect=10).as_dict()
        data = self._http.json(
            "POST", _path(project, name, "apply"), json=body, extensions={"timeout": wait}
        )
        return TransformRun.model_validate(data)

    def list(self, project: str = "default") -> builtins.list[Transform]:
        """A project's transforms, by name."""
        data = self._http.json("GET", _path(project))
        return [Transform.model_validate(item) for item in data["items"]]

    def get(self, project: str, name: str) -> Transform:
        """One transform's definition."""
        return Transform.model_validate(self._http.json("GET", _path(project, name)))

    def runs(
        self, project: str, name: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[TransformRun]:
        """A transform's runs, newest first; pass ``next_cursor`` for more."""
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        data = self._http.json("GET", _path(project, name, "runs"), params=params)
        return Page[TransformRun].model_validate(data)

    def delete(self, project: str, name: str) -> None:
        """Delete a transform and its run history; the tables it wrote stay."""
        self._http.request("DELETE", _path(project, name))

    def lineage(self, project: str, table: str, version: int | None = None) -> TransformLineage:
        """Where ``table@version`` (the current version when ``None``) came from: the runs
        that made it, newest first, and the ingested versions behind them (``sources``)."""
        params: dict[str, Any] = {"table": table}
        if version is not None:
            params["version"] = version
        data = self._http.json("GET", _path(project, tail="lineage"), params=params)
        return TransformLineage.model_validate(data)
