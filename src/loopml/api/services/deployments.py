"""Deployments behind the API: the serving pieces the app runs, and thin calls into the
control plane (``loopml.deploy``); routes hold no logic."""

from __future__ import annotations

from fastapi import Request

from loopml.api.schemas.deployments import DeploymentCreate, DeploymentUpdate, ScaleRequest
from loopml.core.deployments import Deployment, Revision
from loopml.core.errors import ValidationError
from loopml.core.logs import LogQuery
from loopml.core.types import Page
from loopml.deploy import DeploymentControl
from loopml.web.context import get_running


def get_control(request: Request) -> DeploymentControl:
    """The app's control plane (a route dependency)."""
    return get_running(request).serving.control


def create(
    control: DeploymentControl, project: str, body: DeploymentCreate, actor: str, dry_run: bool
) -> Deployment:
    """Create (or, with ``dry_run``, only preview) a deployment."""
    return control.create(project, body.name, body.spec_fields(), actor=actor, dry_run=dry_run)


def list_(
    control: DeploymentControl, project: str, limit: int, cursor: str | None
) -> Page[Deployment]:
    """A page of a project's deployments."""
    return control.list_(project, limit, cursor)


def get(control: DeploymentControl, project: str, name: str) -> Deployment:
    """One deployment, with live status."""
    return control.get(project, name)


def update(
    control: DeploymentControl, project: str, name: str, body: DeploymentUpdate, actor: str
) -> Deployment:
    """Change a deployment's spec."""
    return control.update(project, name, body.changes(), actor=actor)


def scale(
    control: DeploymentControl, project: str, name: str, body: ScaleRequest, actor: str
) -> Deployment:
    """Set a deployment's replica bounds."""
    current = control.get(project, name)
    if body.replicas is not None and (body.min_replicas, body.max_replicas) != (None, None):
        raise ValidationError(
            "give either replicas, or min_replicas and/or max_replicas, not both",
            details={"field": "replicas"},
        )
    if body.replicas is not None:
        low, high = body.replicas, max(body.replicas, 1)
    else:
        low = current.spec.min_replicas if body.min_replicas is None else body.min_replicas
        high = current.spec.max_replicas if body.max_replicas is None else body.max_replicas
    return control.scale(project, name, min_replicas=low, max_replicas=high, actor=actor)


def rollback(
    control: DeploymentControl, project: str, name: str, revision: int, actor: str
) -> Deployment:
    """Serve an earlier revision again."""
    return control.rollback(project, name, revision, actor=actor)


def delete(control: DeploymentControl, project: str, name: str, actor: str) -> None:
    """Delete a deployment and stop what it runs."""
    control.delete(project, name, actor=actor)


def revisions(control: DeploymentControl, project: str, name: str) -> list[Revision]:
    """A deployment's whole history."""
    return control.revisions(project, name)


def logs(
    control: DeploymentControl, project: str, name: str, tail: int, query: LogQuery
) -> list[str]:
    """The last lines its replicas wrote that ``query`` keeps."""
    return control.logs(project, name, tail, query)
