"""Deployments through the API: create, change, scale, roll back, delete; status, revisions
and logs. Requests to a deployment itself go to the gateway (``predict``)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping
from typing import Any

from loopml.client._http import Http, segment
from loopml.core.deployments import Deployment, DeploymentRequest, DeploymentStatus, Revision
from loopml.core.errors import ServiceUnavailableError
from loopml.core.types import Page

DEFAULT_PROJECT = "default"
_UNSET: Any = object()


class Deployments:
    """``client.deployments``: serve registered models.

    Example:
        >>> client.deployments.create("churn", "churn@champion", min_replicas=2)
        >>> client.deployments.wait("churn").status
        'ready'
        >>> client.deployments.predict("churn", [{"age": 41, "plan": "pro"}])

    Every method takes ``project`` (default ``"default"``).
    """

    def __init__(self, http: Http) -> None:
        self._http = http

    def _path(self, project: str, name: str | None = None) -> str:
        path = f"/api/v1/projects/{segment(project)}/deployments"
        return path if name is None else f"{path}/{segment(name)}"

    def create(
        self,
        name: str,
        model: str,
        *,
        min_replicas: int = 1,
        max_replicas: int | None = None,
        canary: str | None = None,
        canary_percent: int | None = None,
        canary_policy: Mapping[str, Any] | None = None,
        shadow: str | None = None,
        scale_to_zero_after_s: int | None = None,
        cpu: str | None = None,
        memory: str | None = None,
        target: str = "local",
        auth: str | None = None,
        features: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        project: str = DEFAULT_PROJECT,
    ) -> Deployment:
        """Create a deployment of ``model`` (``churn/3``, ``churn@champion``, ``churn``).

        Args:
            canary: a second model reference taking ``canary_percent`` of the traffic.
            canary_policy: how the canary is judged (``{"auto": True, "min_requests":
                200, "promote_after_s": 1800}``; see docs/deployments.md).
            shadow: a model reference that gets a copy of every request (never answered).
            auth: ``token`` (the server's default) or ``none``: whether predicting needs a
                token when the server has authentication on.
            features: feature views the gateway completes each ``/predict`` instance from
                (``{"views": ["user_stats"], "missing": "reject"}``; see docs/features.md).
            dry_run: only resolve and check; nothing is created.

        Raises:
            ValidationError: an option out of its bounds, as the API would answer (see
                ``create_from``).
        """
        body: dict[str, Any] = {
            "name": name,
            "model": model,
            "min_replicas": min_replicas,
            "max_replicas": max_replicas if max_replicas is not None else max(min_replicas, 1),
            "target": target,
        }
        if canary is not None:
            body["canary"] = {
                "model": canary,
                "percent": canary_percent or 10,
                **(canary_policy or {}),
            }
        if shadow is not None:
            body["shadow"] = shadow
        if scale_to_zero_after_s is not None:
            body["scale_to_zero_after_s"] = scale_to_zero_after_s
        if auth is not None:
            body["auth"] = auth
        if features is not None:
            body["features"] = dict(features)
        resources = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
        if resources:
            body["resources"] = resources
        request = DeploymentRequest.parse(body)
        return self.create_from(request, dry_run=dry_run, project=project)

    def create_from(
        self, request: DeploymentRequest, *, dry_run: bool = False, project: str = DEFAULT_PROJECT
    ) -> Deployment:
        """Create the deployment ``request`` describes (``create`` builds one from its
        options; ``DeploymentRequest.parse`` checks a body as the API does).

        Args:
            request: the deployment's name and options; the options left out take the
                server's defaults.
            dry_run: only resolve and check; nothing is created.
        """
        body = request.model_dump(mode="json", exclude_unset=True)
        params = {"dry_run": "true"} if dry_run else {}
        data = self._http.json("POST", self._path(project), json=body, params=params)
        return Deployment.model_validate(data)

    def get(self, name: str, *, project: str = DEFAULT_PROJECT) -> Deployment:
        """One deployment with its live status; ``NotFoundError`` if absent."""
        return Deployment.model_validate(self._http.json("GET", self._path(project, name)))

    def list(
        self, *, project: str = DEFAULT_PROJECT, limit: int = 100, cursor: str | None = None
    ) -> Page[Deployment]:
        """One page of a project's deployments, by name."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        data = self._http.json("GET", self._path(project), params=params)
        return Page[Deployment].model_validate(data)

    def iter(self, *, project: str = DEFAULT_PROJECT) -> Iterator[Deployment]:
        """Every deployment of a project."""
        cursor: str | None = None
        while True:
            page = self.list(project=project, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def update(
        self,
        name: str,
        *,
        model: str | None = None,
        canary: str | None = _UNSET,
        canary_percent: int = 10,
        canary_policy: Mapping[str, Any] | None = None,
        shadow: str | None = _UNSET,
        scale_to_zero_after_s: int | None = _UNSET,
        auth: str | None = None,
        features: Mapping[str, Any] | None = _UNSET,
        project: str = DEFAULT_PROJECT,
    ) -> Deployment:
        """Change a deployment; ``None`` removes a canary, a shadow, scale-to-zero or the
        feature views (``auth``: ``token`` or ``none``, unchanged when ``None``;
        ``canary_policy`` and ``features`` as in ``create``)."""
        body: dict[str, Any] = {}
        if model is not None:
            body["model"] = model
        if auth is not None:
            body["auth"] = auth
        if canary is not _UNSET:
            body["canary"] = (
                None
                if canary is None
                else {"model": canary, "percent": canary_percent, **(canary_policy or {})}
            )
        if shadow is not _UNSET:
            body["shadow"] = shadow
        if scale_to_zero_after_s is not _UNSET:
            body["scale_to_zero_after_s"] = scale_to_zero_after_s
        if features is not _UNSET:
            body["features"] = None if features is None else dict(features)
        data = self._http.json("PATCH", self._path(project, name), json=body)
        return Deployment.model_validate(data)

    def scale(
        self,
        name: str,
        replicas: int | None = None,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> Deployment:
        """Set the replica count (or its bounds)."""
        given = {"replicas": replicas, "min_replicas": min_replicas, "max_replicas": max_replicas}
        body = {k: v for k, v in given.items() if v is not None}
        data = self._http.json("POST", f"{self._path(project, name)}/scale", json=body)
        return Deployment.model_validate(data)

    def rollback(self, name: str, revision: int, *, project: str = DEFAULT_PROJECT) -> Deployment:
        """Serve revision ``revision`` again (the spec is pinned to its version)."""
        data = self._http.json(
            "POST", f"{self._path(project, name)}/rollback", json={"revision": int(revision)}
        )
        return Deployment.model_validate(data)

    def delete(self, name: str, *, project: str = DEFAULT_PROJECT) -> None:
        """Delete a deployment; its replicas are stopped first."""
        self._http.request("DELETE", self._path(project, name))

    def revisions(self, name: str, *, project: str = DEFAULT_PROJECT) -> builtins.list[Revision]:
        """Every revision the deployment has had, oldest first."""
        data = self._http.json("GET", f"{self._path(project, name)}/revisions")
        return [Revision.model_validate(item) for item in data["items"]]

    def logs(
        self,
        name: str,
        *,
        tail: int = 100,
        grep: str | None = None,
        level: str | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> builtins.list[str]:
        """The last ``tail`` lines its replicas wrote; with ``grep`` (a text, any case) or
        ``level`` (``debug`` ... ``critical``: that level and above), the last that match."""
        params = _log_params(grep, level) | {"tail": tail}
        data = self._http.json("GET", f"{self._path(project, name)}/logs", params=params)
        lines: builtins.list[str] = data["lines"]
        return lines

    def wait(
        self,
        name: str,
        *,
        timeout_s: float = 120.0,
        project: str = DEFAULT_PROJECT,
    ) -> Deployment:
        """Poll until the deployment is ready (or scaled to zero); ``ServiceUnavailableError``
        with its last status after ``timeout_s``, and at once when it failed."""
        deadline = time.monotonic() + timeout_s
        settled = (DeploymentStatus.READY, DeploymentStatus.SCALED_TO_ZERO)
        while True:
            deployment = self.get(name, project=project)
            if deployment.status in settled:
                return deployment
            if deployment.status == DeploymentStatus.FAILED or time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"deployment {name!r} is {deployment.status}: "
                    f"{deployment.status_message or 'not ready in time'}",
                    details={"deployment": name, "status": deployment.status},
                )
            time.sleep(0.25)

    def predict(
        self, name: str, instances: builtins.list[dict[str, Any]], *, project: str = DEFAULT_PROJECT
    ) -> dict[str, Any]:
        """Send ``{"instances": [...]}`` to the deployment through the gateway."""
        path = f"/deployments/{segment(name)}/predict"
        if project != DEFAULT_PROJECT:
            path = f"/projects/{segment(project)}{path}"
        answer: dict[str, Any] = self._http.json("POST", path, json={"instances": instances})
        return answer


def _log_params(grep: str | None, level: str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    if grep:
        params["grep"] = grep
    if level:
        params["level"] = level
    return params
