"""Schedules through the API: start a pipeline at each tick of a cron expression."""

from __future__ import annotations

import builtins
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.automation import Firing, Schedule
from loopml.core.names import DEFAULT_PROJECT


def _path(project: str | None, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}/schedules"
    if name:
        base = f"{base}/{segment(name)}"
    return f"{base}/{tail}" if tail else base


class Schedules:
    """``client.schedules``: cron schedules of pipelines.

    Example:
        >>> client.schedules.create("nightly", pipeline="churn-retrain", cron="0 3 * * *",
        ...                         timezone="Europe/Paris")
        >>> client.schedules.update("nightly", enabled=False)      # pause
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(
        self,
        name: str,
        *,
        pipeline: str,
        cron: str,
        timezone: str = "UTC",
        inputs: dict[str, Any] | None = None,
        concurrency: str = "skip",
        enabled: bool = True,
        project: str | None = None,
    ) -> Schedule:
        """Add a schedule; ``concurrency`` is ``skip`` or ``queue`` (while a run it started
        is active)."""
        body = {
            "name": name,
            "pipeline": pipeline,
            "cron": cron,
            "timezone": timezone,
            "inputs": inputs or {},
            "concurrency": concurrency,
            "enabled": enabled,
        }
        return Schedule.model_validate(self._http.json("POST", _path(project), json=body))

    def list(self, project: str | None = None) -> builtins.list[Schedule]:
        """A project's schedules, by name."""
        data = self._http.json("GET", _path(project))
        return [Schedule.model_validate(item) for item in data["items"]]

    def get(self, name: str, *, project: str | None = None) -> Schedule:
        """One schedule, with its next tick and last run."""
        return Schedule.model_validate(self._http.json("GET", _path(project, name)))

    def update(self, name: str, *, project: str | None = None, **fields: Any) -> Schedule:
        """Change ``enabled``, ``cron``, ``timezone``, ``inputs`` or ``concurrency``."""
        data = self._http.json("PATCH", _path(project, name), json=fields)
        return Schedule.model_validate(data)

    def pause(self, name: str, *, project: str | None = None) -> Schedule:
        """Stop firing until resumed."""
        return self.update(name, project=project, enabled=False)

    def resume(self, name: str, *, project: str | None = None) -> Schedule:
        """Fire again from the next tick (missed ticks are not caught up)."""
        return self.update(name, project=project, enabled=True)

    def delete(self, name: str, *, project: str | None = None) -> None:
        """Delete a schedule (the runs it started stay)."""
        self._http.request("DELETE", _path(project, name))

    def history(
        self, name: str, *, limit: int = 50, project: str | None = None
    ) -> builtins.list[Firing]:
        """The schedule's firings, newest first."""
        data = self._http.json("GET", _path(project, name, "history"), params={"limit": limit})
        return [Firing.model_validate(item) for item in data["items"]]
