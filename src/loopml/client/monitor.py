"""Monitoring through the API: a deployment's windows and dashboard view, a version's
reference profile, alert rules."""

from __future__ import annotations

from typing import Any

from loopml.client._http import Http, segment
from loopml.core.alerts import AlertRule
from loopml.core.names import DEFAULT_PROJECT


def _project(project: str | None) -> str:
    return f"/api/v1/projects/{segment(project or DEFAULT_PROJECT)}"


class Monitoring:
    """``client.monitoring``: windows, drift, live quality and alert rules.

    Example:
        >>> view = client.monitoring.view("churn-api")
        >>> view["windows"][0]["summary"]["drift"]["drifted"]
        >>> client.monitoring.create_alert("slow", deployment="churn-api",
        ...     metric="latency_p95_ms", comparator=">", threshold=50, for_s=300)
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def view(
        self, deployment: str, *, window: str = "1h", project: str | None = None
    ) -> dict[str, Any]:
        """The deployment's monitoring view: ``now`` (the serving version's figures, the
        ones the portal and ``loopml monitor`` show), recent windows, references, alerts."""
        path = f"{_project(project)}/deployments/{segment(deployment)}/monitor"
        answer: dict[str, Any] = self._http.json("GET", path, params={"window": window})
        return answer

    def windows(
        self, deployment: str, *, window: str = "1h", limit: int = 24, project: str | None = None
    ) -> list[dict[str, Any]]:
        """The deployment's windows of one size, newest first."""
        path = f"{_project(project)}/deployments/{segment(deployment)}/windows"
        answer: list[dict[str, Any]] = self._http.json(
            "GET", path, params={"window": window, "limit": limit}
        )
        return answer

    def replicas(self, deployment: str, *, project: str | None = None) -> dict[str, Any]:
        """The deployment's replicas measured now (``items``: CPU %, RSS, connections,
        restarts, uptime of each; ``measured`` false with a ``reason`` when its target
        cannot measure them)."""
        path = f"{_project(project)}/deployments/{segment(deployment)}/replicas"
        answer: dict[str, Any] = self._http.json("GET", path)
        return answer

    def reference(self, model: str, version: int, *, project: str | None = None) -> dict[str, Any]:
        """A model version's reference profile (built on first request)."""
        path = f"{_project(project)}/models/{segment(model)}/versions/{version}/reference"
        answer: dict[str, Any] = self._http.json("GET", path)
        return answer

    def set_reference(
        self,
        model: str,
        version: int,
        *,
        table: str,
        target: str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        """Build a model version's reference profile from a lake table (``name`` or
        ``name@version``), replacing the one it had, calibrated on the table's ``target``
        labels when named (a regressor's errors measured on them); the stored reference."""
        path = f"{_project(project)}/models/{segment(model)}/versions/{version}/reference"
        body = {"table": table} if target is None else {"table": table, "target": target}
        answer: dict[str, Any] = self._http.json("PUT", path, json=body)
        return answer

    def create_alert(
        self,
        name: str,
        *,
        deployment: str,
        metric: str,
        comparator: str,
        threshold: float,
        clear_threshold: float | None = None,
        for_s: float = 0.0,
        window: str = "1h",
        severity: str = "warning",
        webhook: str | None = None,
        project: str | None = None,
    ) -> AlertRule:
        """Add an alert rule."""
        body = {
            "name": name,
            "deployment": deployment,
            "metric": metric,
            "comparator": comparator,
            "threshold": threshold,
            "clear_threshold": clear_threshold,
            "for_s": for_s,
            "window": window,
            "severity": severity,
            "webhook": webhook,
        }
        data = self._http.json("POST", f"{_project(project)}/alerts", json=body)
        return AlertRule.model_validate(data)

    def alerts(
        self, *, deployment: str | None = None, project: str | None = None
    ) -> list[AlertRule]:
        """A project's alert rules with their states."""
        params = {"deployment": deployment} if deployment else {}
        data = self._http.json("GET", f"{_project(project)}/alerts", params=params)
        return [AlertRule.model_validate(item) for item in data["items"]]

    def delete_alert(self, name: str, *, project: str | None = None) -> None:
        """Remove an alert rule."""
        self._http.request("DELETE", f"{_project(project)}/alerts/{segment(name)}")

    def silence_alert(self, name: str, seconds: float, *, project: str | None = None) -> AlertRule:
        """Silence a rule's notifications for ``seconds`` (0 resumes them)."""
        path = f"{_project(project)}/alerts/{segment(name)}/silence"
        return AlertRule.model_validate(self._http.json("POST", path, json={"seconds": seconds}))

    def deliveries(self, name: str, *, project: str | None = None) -> list[dict[str, Any]]:
        """A rule's webhook notifications, newest first."""
        path = f"{_project(project)}/alerts/{segment(name)}/deliveries"
        answer: list[dict[str, Any]] = self._http.json("GET", path)
        return answer
