"""Triggers through the API: start a pipeline on an event, or on a call to a webhook."""

from __future__ import annotations

import builtins
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.automation import SECRET_HEADER, Firing, Trigger
from loopml.core.names import DEFAULT_PROJECT


def _path(project: str | None, name: str = "", tail: str = "") -> str:
    base = f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}/triggers"
    if name:
        base = f"{base}/{segment(name)}"
    return f"{base}/{tail}" if tail else base


class Triggers:
    """``client.triggers``: event and webhook triggers of pipelines.

    Example:
        >>> client.triggers.create("on-rows", pipeline="churn-retrain", on="table.appended",
        ...                        where={"table": "churn"}, min_rows=1000)
        >>> hook = client.triggers.create("ci", pipeline="churn-retrain", on="webhook")
        >>> client.triggers.fire(hook.id, hook.secret)     # {"run_id": ...}
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def create(
        self,
        name: str,
        *,
        pipeline: str,
        on: str,
        where: dict[str, str] | None = None,
        min_rows: int | None = None,
        inputs: dict[str, Any] | None = None,
        concurrency: str = "skip",
        enabled: bool = True,
        project: str | None = None,
    ) -> Trigger:
        """Add a trigger. ``on`` is ``table.appended``, ``drift.detected``,
        ``model.version.registered``, ``gate.failed`` or ``webhook``; a webhook trigger's
        ``secret`` is in this answer only."""
        body = {
            "name": name,
            "pipeline": pipeline,
            "on": on,
            "where": where or {},
            "min_rows": min_rows,
            "inputs": inputs or {},
            "concurrency": concurrency,
            "enabled": enabled,
        }
        return Trigger.model_validate(self._http.json("POST", _path(project), json=body))

    def list(self, project: str | None = None) -> builtins.list[Trigger]:
        """A project's triggers, by name."""
        data = self._http.json("GET", _path(project))
        return [Trigger.model_validate(item) for item in data["items"]]

    def get(self, name: str, *, project: str | None = None) -> Trigger:
        """One trigger (never its secret)."""
        return Trigger.model_validate(self._http.json("GET", _path(project, name)))

    def update(self, name: str, *, project: str | None = None, **fields: Any) -> Trigger:
        """Change ``enabled``, ``where``, ``min_rows``, ``inputs`` or ``concurrency``."""
        return Trigger.model_validate(self._http.json("PATCH", _path(project, name), json=fields))

    def pause(self, name: str, *, project: str | None = None) -> Trigger:
        """Stop reacting until resumed."""
        return self.update(name, project=project, enabled=False)

    def resume(self, name: str, *, project: str | None = None) -> Trigger:
        """React again, to events appended from now on."""
        return self.update(name, project=project, enabled=True)

    def delete(self, name: str, *, project: str | None = None) -> None:
        """Delete a trigger (the runs it started stay)."""
        self._http.request("DELETE", _path(project, name))

    def history(
        self, name: str, *, limit: int = 50, project: str | None = None
    ) -> builtins.list[Firing]:
        """The trigger's firings, newest first."""
        data = self._http.json("GET", _path(project, name, "history"), params={"limit": limit})
        return [Firing.model_validate(item) for item in data["items"]]

    def fire(
        self, trigger_id: str, secret: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Call a webhook trigger: ``{"outcome", "run_id"}`` when it started a run, else
        ``{"outcome", "skipped": why}`` (or ``"queued"``).

        Raises:
            PermissionDeniedError: a wrong secret.
        """
        data: dict[str, Any] = self._http.json(
            "POST",
            f"/api/v1/triggers/{segment(trigger_id)}/fire",
            json=payload,
            headers={SECRET_HEADER: secret},
        )
        return data
