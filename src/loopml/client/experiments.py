"""Experiments through the API."""

from __future__ import annotations

from collections.abc import Iterator

from loopml.client._http import Http, segment
from loopml.core.runs import Experiment
from loopml.core.types import Page


def _path(project: str, name: str = "") -> str:
    base = f"/api/v1/projects/{segment(project)}/experiments"
    return f"{base}/{segment(name)}" if name else base


class Experiments:
    """``client.experiments``: create, get, list."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(self, name: str, *, project: str = "default", description: str = "") -> Experiment:
        """Create an experiment; ``AlreadyExistsError`` if the name is taken."""
        body = {"name": name, "description": description}
        return Experiment.model_validate(self._http.json("POST", _path(project), json=body))

    def get(self, name: str, *, project: str = "default") -> Experiment:
        """One experiment; ``NotFoundError`` if absent."""
        return Experiment.model_validate(self._http.json("GET", _path(project, name)))

    def list(
        self, *, project: str = "default", limit: int = 100, cursor: str | None = None
    ) -> Page[Experiment]:
        """One page of a project's experiments, by name."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = self._http.json("GET", _path(project), params=params)
        return Page[Experiment].model_validate(data)

    def iter(self, *, project: str = "default", page_size: int = 100) -> Iterator[Experiment]:
        """Every experiment of a project, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(project=project, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor
