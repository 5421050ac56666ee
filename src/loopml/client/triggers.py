"""Triggers through the API: start a pipeline on an event, or on a call to a webhook."""

from __future__ import annotations

from typing import Any

from loopml.client._http import segment
from loopml.client.automations import AutomationResource
from loopml.core.automation import SECRET_HEADER, Trigger


class Triggers(AutomationResource[Trigger]):
    """``client.triggers``: event and webhook triggers of pipelines.

    Example:
        >>> client.triggers.create("on-rows", pipeline="churn-retrain", on="table.appended",
        ...                        where={"table": "churn"}, min_rows=1000)
        >>> hook = client.triggers.create("ci", pipeline="churn-retrain", on="webhook")
        >>> client.triggers.fire(hook.id, hook.secret)     # {"run_id": ...}
    """

    noun = "triggers"
    model = Trigger

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
        """Add a trigger. ``on`` is ``table.appended``, ``drift.detected``, ``drift.labelled``,
        ``model.version.registered``, ``gate.failed``, ``codeset.versioned`` or
        ``webhook``; a webhook trigger's ``secret`` is in this answer only."""
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
        return self._create(body, project)

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
