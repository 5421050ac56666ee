"""/api/v1/projects/{project}/deployments: create, change, scale, roll back and delete
deployments; their revisions and logs. Requests to the deployments themselves go through
the gateway (``loopml.serve.gateway.app``), mounted on the same app."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, log_query, project_path, tail_query
from loopml.api.schemas.deployments import (
    DeploymentCreate,
    DeploymentLogs,
    DeploymentUpdate,
    RevisionList,
    RollbackRequest,
    ScaleRequest,
    cursor_query,
    deployment_path,
)
from loopml.core.deployments import Deployment
from loopml.core.logs import LogQuery
from loopml.core.types import Page
from loopml.deploy import DeploymentControl, scaling
from loopml.faces.context import Actor, get_control

router = APIRouter(route_class=StrictJSONRoute, tags=["deployments"], responses=ERROR_RESPONSES)
DEPLOYMENTS = "/api/v1/projects/{project}/deployments"
DEPLOYMENT = DEPLOYMENTS + "/{name}"
PROJECT = project_path("The project that owns the deployments.")
NAME = deployment_path()
Control = Annotated[DeploymentControl, Depends(get_control)]


@router.post(
    DEPLOYMENTS,
    status_code=201,
    responses={200: {"model": Deployment, "description": "Dry run: what would be created."}},
)
def create_deployment(
    body: DeploymentCreate,
    control: Control,
    actor: Actor,
    response: Response,
    project: str = PROJECT,
    dry_run: bool = Query(default=False, description="Resolve and check only; create nothing."),
) -> Deployment:
    """Create a deployment: its model references are resolved to READY versions (revision
    1, and more for a canary or shadow) and its target starts it. The answer is PENDING;
    `status` becomes `ready` once replicas answer (`scaled_to_zero` with `min_replicas` 0)."""
    if dry_run:
        response.status_code = 200
    return control.create(project, body.name, body.spec_fields(), actor=actor, dry_run=dry_run)


@router.get(DEPLOYMENTS)
def list_deployments(
    control: Control,
    project: str = PROJECT,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = cursor_query(),
) -> Page[Deployment]:
    """A project's deployments by name, a page at a time, with live status."""
    return control.list_(project, limit, cursor)


@router.get(DEPLOYMENT)
def get_deployment(control: Control, project: str = PROJECT, name: str = NAME) -> Deployment:
    """One deployment: spec, traffic per revision, shadow, status, recent revisions."""
    return control.get(project, name)


@router.patch(DEPLOYMENT)
def update_deployment(
    body: DeploymentUpdate, control: Control, actor: Actor, project: str = PROJECT, name: str = NAME
) -> Deployment:
    """Change spec fields; references are resolved again, and a changed version is a new
    revision, rolled out without dropping requests."""
    return control.update(project, name, body.changes(), actor=actor)


@router.delete(DEPLOYMENT, status_code=204)
def delete_deployment(
    control: Control, actor: Actor, project: str = PROJECT, name: str = NAME
) -> Response:
    """Delete a deployment; its replicas are stopped before the answer."""
    control.delete(project, name, actor=actor)
    return Response(status_code=204)


@router.post(DEPLOYMENT + "/scale")
def scale_deployment(
    body: ScaleRequest, control: Control, actor: Actor, project: str = PROJECT, name: str = NAME
) -> Deployment:
    """Set the replica bounds (`replicas` sets both)."""
    return scaling.scale(
        control,
        project,
        name,
        replicas=body.replicas,
        min_replicas=body.min_replicas,
        max_replicas=body.max_replicas,
        actor=actor,
    )


@router.post(DEPLOYMENT + "/rollback")
def rollback_deployment(
    body: RollbackRequest,
    control: Control,
    actor: Actor,
    project: str = PROJECT,
    name: str = NAME,
) -> Deployment:
    """Send all traffic to an earlier revision; the spec is pinned to its version (update
    `model` to an alias to follow it again)."""
    return control.rollback(project, name, body.revision, actor=actor)


@router.get(DEPLOYMENT + "/revisions")
def list_revisions(control: Control, project: str = PROJECT, name: str = NAME) -> RevisionList:
    """Every revision the deployment has had, oldest first."""
    return RevisionList(items=control.revisions(project, name))


@router.get(DEPLOYMENT + "/logs")
def deployment_logs(
    control: Control,
    query: Annotated[LogQuery, Depends(log_query)],
    project: str = PROJECT,
    name: str = NAME,
    tail: int = tail_query(),
) -> DeploymentLogs:
    """The last lines the deployment's replicas (and their supervisor) wrote; with `grep`
    or `level`, the last of those that match (searched back through the rotated file)."""
    return DeploymentLogs(lines=control.logs(project, name, tail, query))
