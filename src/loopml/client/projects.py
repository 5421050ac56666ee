"""Projects through the API."""

from __future__ import annotations

from collections.abc import Iterator

from loopml.client._http import Http, segment
from loopml.core.errors import AlreadyExistsError
from loopml.core.types import Page, Project


class Projects:
    """``client.projects``: create, list, get, update, delete."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(self, name: str, description: str = "", *, exist_ok: bool = False) -> Project:
        """Create a project; ``AlreadyExistsError`` if the name is taken, unless ``exist_ok``
        (then the existing project is returned as it is: get-or-create)."""
        body = {"name": name, "description": description}
        try:
            return Project.model_validate(self._http.json("POST", "/api/v1/projects", json=body))
        except AlreadyExistsError:
            if not exist_ok:
                raise
        return self.get(name)

    def get(self, name: str) -> Project:
        """One project; ``NotFoundError`` if absent."""
        return Project.model_validate(self._http.json("GET", f"/api/v1/projects/{segment(name)}"))

    def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[Project]:
        """One page of projects, by name."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = self._http.json("GET", "/api/v1/projects", params=params)
        return Page[Project].model_validate(data)

    def iter(self, *, page_size: int = 100) -> Iterator[Project]:
        """Every project, fetching pages as needed."""
        cursor: str | None = None
        while True:
            page = self.list(limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def update(self, name: str, *, description: str) -> Project:
        """Change a project's description."""
        path = f"/api/v1/projects/{segment(name)}"
        return Project.model_validate(
            self._http.json("PATCH", path, json={"description": description})
        )

    def delete(self, name: str) -> None:
        """Delete a project and its artifacts."""
        self._http.request("DELETE", f"/api/v1/projects/{segment(name)}")
