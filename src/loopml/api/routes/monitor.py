"""Monitoring: a deployment's windows and dashboard view, a model version's reference
profile, and alert rules under /api/v1/projects/{project}/alerts."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.deployments import deployment_path
from loopml.core.alerts import AlertRule, AlertRuleSpec
from loopml.deploy import DeploymentControl
from loopml.deploy.replicas import ReplicaList, deployment_replicas
from loopml.faces.context import Actor, Ctx, get_control
from loopml.monitor import service
from loopml.monitor.reference import Reference

router = APIRouter(tags=["monitoring"], responses=ERROR_RESPONSES, route_class=StrictJSONRoute)
PROJECT = project_path("The project that owns the deployment.")
DEPLOYMENT = "/api/v1/projects/{project}/deployments/{name}"
ALERTS = "/api/v1/projects/{project}/alerts"
NAME = Path(description="The deployment's name.", max_length=40)
RULE = Path(description="The alert rule's name.", max_length=63)
SIZE = Query(default="1h", max_length=8, description="The window size (`1h`, `1d`, ...).")


class AlertRuleList(BaseModel):
    """A project's alert rules."""

    items: list[AlertRule]


class Silence(BaseModel):
    """How long a rule stays silent."""

    seconds: float = Field(ge=0, le=90 * 86_400, description="Seconds; 0 resumes notifications.")


@router.get(DEPLOYMENT + "/monitor")
async def deployment_view(
    ctx: Ctx, project: str = PROJECT, name: str = NAME, window: str = SIZE
) -> dict[str, Any]:
    """The deployment's monitoring: `now`, the figures for this deployment now (the version
    taking the most traffic, its newest window, its reference, what other versions did in
    that window's time: what the portal and `loopml monitor` show), its recent windows
    (usage, drift per column and of the prediction, live quality), the reference of each
    version they served (or why drift is off), and its alert rules with the firing ones."""
    return await anyio.to_thread.run_sync(
        lambda: service.deployment_view(ctx.store, ctx.artifacts, project, name, size=window)
    )


@router.get(DEPLOYMENT + "/windows")
def list_windows(
    ctx: Ctx,
    project: str = PROJECT,
    name: str = NAME,
    window: str = SIZE,
    limit: int = Query(default=24, ge=1, le=service.MAX_WINDOWS),
) -> list[dict[str, Any]]:
    """The deployment's windows of one size, newest first."""
    return service.list_windows(ctx.store, project, name, size=window, limit=limit)


@router.get(DEPLOYMENT + "/replicas")
async def list_replicas(
    project: str = PROJECT,
    name: str = deployment_path(),
    control: DeploymentControl = Depends(get_control),
) -> ReplicaList:
    """The deployment's replicas measured now: CPU since the previous reading (% of one
    core), resident memory, established connections, restarts after a crash, uptime. The
    monitor adds the same samples to its windows every round."""
    return await anyio.to_thread.run_sync(lambda: deployment_replicas(control, project, name))


@router.get("/api/v1/projects/{project}/models/{model}/versions/{version}/reference")
async def get_reference(
    ctx: Ctx,
    project: str = PROJECT,
    model: str = Path(max_length=63),
    version: int = Path(ge=1),
) -> Reference:
    """The version's reference profile (built from its training split on first request when
    it was registered before monitoring); `status` `off` says why there is none."""
    return await anyio.to_thread.run_sync(
        lambda: service.get_reference(ctx.store, ctx.artifacts, project, model, version)
    )


class ReferenceTable(BaseModel):
    """The lake table a version's reference profile is built from."""

    table: str = Field(
        max_length=200,
        description="A table of the project, `name` (its current version) or `name@version`; "
        "it holds every input column of the model's signature.",
    )
    target: str | None = Field(
        default=None,
        max_length=200,
        description="The label column in the table: the profile then holds, for a "
        "classifier, the calibration of its probabilities against it, for a regressor its "
        "errors by predicted value (at least 100 labelled rows), which the estimate before "
        "labels reads.",
    )


@router.put("/api/v1/projects/{project}/models/{model}/versions/{version}/reference")
async def put_reference(
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = Path(max_length=63),
    version: int = Path(ge=1),
    body: ReferenceTable = Body(),
) -> Reference:
    """Build the version's reference profile from a lake table's first 100,000 rows (and
    the model's predictions on them), replacing the one it had (from its dataset, or the
    sample it was logged with); the monitor judges drift against it from its next round.
    With `target`, a classifier's profile is calibrated on the table's labels (a
    regressor's holds its errors on them). 404 for an
    unknown table, 422 naming the input columns (or target) the table lacks; nothing is
    stored on an error."""
    return await anyio.to_thread.run_sync(
        lambda: service.set_reference_table(
            ctx.store,
            ctx.artifacts,
            project,
            model,
            version,
            body.table,
            actor=actor,
            target=body.target,
        )
    )


@router.post(ALERTS, status_code=201)
def create_rule(
    ctx: Ctx, actor: Actor, project: str = PROJECT, body: AlertRuleSpec = Body()
) -> AlertRule:
    """Add an alert rule on a deployment's window metric. A webhook to a loopback,
    link-local or private address is refused unless `monitor.webhook_allow` names it."""
    allow = ctx.settings.monitor.webhook_allow
    return service.create_rule(ctx.store, project, body, allow=allow, actor=actor)


@router.get(ALERTS)
def list_rules(
    ctx: Ctx, project: str = PROJECT, deployment: str | None = Query(default=None, max_length=40)
) -> AlertRuleList:
    """A project's alert rules with their states."""
    return AlertRuleList(items=service.list_rules(ctx.store, project, deployment))


@router.get(ALERTS + "/{rule}")
def get_rule(ctx: Ctx, project: str = PROJECT, rule: str = RULE) -> AlertRule:
    """One alert rule."""
    return service.get_rule(ctx.store, project, rule)


@router.delete(ALERTS + "/{rule}", status_code=204)
def delete_rule(ctx: Ctx, actor: Actor, project: str = PROJECT, rule: str = RULE) -> None:
    """Remove an alert rule (and its delivery log)."""
    service.delete_rule(ctx.store, project, rule, actor=actor)


@router.post(ALERTS + "/{rule}/silence")
def silence_rule(
    ctx: Ctx, actor: Actor, project: str = PROJECT, rule: str = RULE, body: Silence = Body()
) -> AlertRule:
    """Stop the rule's notifications for a while; its state still moves and its events are
    still written."""
    return service.silence_rule(ctx.store, project, rule, seconds=body.seconds, actor=actor)


@router.get(ALERTS + "/{rule}/deliveries")
def rule_deliveries(ctx: Ctx, project: str = PROJECT, rule: str = RULE) -> list[dict[str, Any]]:
    """The rule's webhook notifications, newest first: outcome, attempts, status, error."""
    return service.rule_deliveries(ctx.store, project, rule)
