"""Schedules through the API: start a pipeline at each tick of a cron expression."""

from __future__ import annotations

from typing import Any

from loopml.client.automations import AutomationResource
from loopml.core.automation import Schedule


class Schedules(AutomationResource[Schedule]):
    """``client.schedules``: cron schedules of pipelines.

    Example:
        >>> client.schedules.create("nightly", pipeline="churn-retrain", cron="0 3 * * *",
        ...                         timezone="Europe/Paris")
        >>> client.schedules.update("nightly", enabled=False)      # pause
    """

    noun = "schedules"
    model = Schedule

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
        return self._create(body, project)
