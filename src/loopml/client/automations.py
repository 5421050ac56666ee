"""What ``client.schedules`` and ``client.triggers`` share: one resource shape under
``/api/v1/projects/{project}/<noun>`` with read, list, change, pause, resume, delete and
firing history. Each subclass adds its own ``create`` (and a trigger its webhook ``fire``).
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from loopml.client._http import Http, segment
from loopml.core.automation import Firing
from loopml.core.names import DEFAULT_PROJECT

Model = TypeVar("Model", bound=BaseModel)


class AutomationResource(Generic[Model]):
    """The routes a schedule and a trigger share.

    Subclasses set ``noun`` (the path segment, ``schedules`` or ``triggers``) and ``model``
    (what an answer is read as).
    """

    noun: ClassVar[str]
    model: type[Model]

    def __init__(self, http: Http) -> None:
        self._http = http

    def _path(self, project: str | None, name: str = "", tail: str = "") -> str:
        base = f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}/{self.noun}"
        if name:
            base = f"{base}/{segment(name)}"
        return f"{base}/{tail}" if tail else base

    def _create(self, body: dict[str, Any], project: str | None) -> Model:
        return self.model.model_validate(self._http.json("POST", self._path(project), json=body))

    def list(self, project: str | None = None) -> builtins.list[Model]:
        """A project's, by name."""
        data = self._http.json("GET", self._path(project))
        return [self.model.model_validate(item) for item in data["items"]]

    def get(self, name: str, *, project: str | None = None) -> Model:
        """One by name (a schedule with its next tick; a trigger never with its secret)."""
        return self.model.model_validate(self._http.json("GET", self._path(project, name)))

    def update(self, name: str, *, project: str | None = None, **fields: Any) -> Model:
        """Change the fields given (``enabled``, ``inputs``, ``concurrency``, and each
        kind's own: a schedule's ``cron`` and ``timezone``, a trigger's ``where`` and
        ``min_rows``)."""
        data = self._http.json("PATCH", self._path(project, name), json=fields)
        return self.model.model_validate(data)

    def pause(self, name: str, *, project: str | None = None) -> Model:
        """Stop firing until resumed."""
        return self.update(name, project=project, enabled=False)

    def resume(self, name: str, *, project: str | None = None) -> Model:
        """Fire again from now on: a schedule from its next tick (missed ticks are not
        caught up), a trigger on events appended from now on."""
        return self.update(name, project=project, enabled=True)

    def delete(self, name: str, *, project: str | None = None) -> None:
        """Delete it (the runs it started stay)."""
        self._http.request("DELETE", self._path(project, name))

    def history(
        self, name: str, *, limit: int = 50, project: str | None = None
    ) -> builtins.list[Firing]:
        """Its firings, newest first."""
        params = {"limit": limit}
        data = self._http.json("GET", self._path(project, name, "history"), params=params)
        return [Firing.model_validate(item) for item in data["items"]]
