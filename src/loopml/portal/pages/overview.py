"""The overview (``/``): deployments by state with their traffic and resources, firing
alerts, recent pipeline runs and the activity feed, over every project the viewer sees."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loopml import events, projects
from loopml.core.alerts import AlertRule
from loopml.core.clock import utcnow
from loopml.core.deployments import Deployment
from loopml.core.pipelines import PipelineRun
from loopml.core.types import Event
from loopml.deploy import DeploymentControl
from loopml.monitor import service as monitor
from loopml.monitor.windows import parse_size
from loopml.pipelines import service as pipelines
from loopml.portal.web import (
    PageRoute,
    Viewer,
    ViewerDep,
    context_of,
    control_of,
    read_only,
    render,
)
from loopml.settings import Settings
from loopml.store import MetadataStore

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_DEPLOYMENTS = 500
"""Most deployments listed per project on the overview (the rest are counted)."""
FEED = 20
"""Events and pipeline runs shown."""


@dataclass
class Overview:
    """What the overview shows."""

    deployments: list[dict[str, Any]] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    hour: dict[str, int] = field(default_factory=lambda: {"requests": 0, "errors": 0})
    day: dict[str, int] = field(default_factory=lambda: {"requests": 0, "errors": 0})
    replicas: int = 0
    cpu_percent: float = 0.0
    rss_mb: float = 0.0
    firing: list[AlertRule] = field(default_factory=list)
    runs: list[PipelineRun] = field(default_factory=list)
    feed: list[Event] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)


def _sizes(settings: Settings) -> tuple[str, str]:
    """The window sizes summed for the last hour (the smallest) and the last day (the
    largest that is at most a day)."""
    sizes = sorted(settings.monitor.windows, key=parse_size)
    day = [s for s in sizes if parse_size(s) <= 86_400]
    return sizes[0], (day[-1] if day else sizes[0])


def gather(
    store: MetadataStore, control: DeploymentControl, settings: Settings, viewer: Viewer
) -> Overview:
    """Read everything the overview shows (blocking: run it in a worker thread)."""
    made = Overview()
    now = utcnow()
    hour_size, day_size = _sizes(settings)
    listed = projects.list_(store, limit=1000).items
    made.projects = viewer.visible([p.name for p in listed])
    for project in made.projects:
        found: list[Deployment] = control.list_(project, MAX_DEPLOYMENTS, None).items
        hour = monitor.project_usage(store, project, size=hour_size, since=now - timedelta(hours=1))
        day = monitor.project_usage(store, project, size=day_size, since=now - timedelta(days=1))
        for deployment in found:
            used_hour = hour.get(deployment.name, {})
            used_day = day.get(deployment.name, {})
            made.states[deployment.status.value] += 1
            for total, used in ((made.hour, used_hour), (made.day, used_day)):
                total["requests"] += used.get("requests", 0)
                total["errors"] += used.get("errors", 0)
            made.replicas += deployment.replicas_ready
            made.cpu_percent += used_hour.get("cpu_percent", 0.0) * used_hour.get("replicas", 0)
            made.rss_mb += used_hour.get("rss_mb", 0.0) * used_hour.get("replicas", 0)
            made.deployments.append({"deployment": deployment, "hour": used_hour, "day": used_day})
        made.firing += [r for r in monitor.list_rules(store, project) if r.state == "firing"]
        made.runs += pipelines.list_runs(store, project, limit=FEED).items
        made.feed += events.list_events(store, project=project, limit=FEED, newest_first=True).items
    made.runs = sorted(made.runs, key=lambda r: r.created_at, reverse=True)[:FEED]
    made.feed = sorted(made.feed, key=lambda e: e.time, reverse=True)[:FEED]
    return made


@router.get("/")
async def overview(request: Request, viewer: ViewerDep) -> Response:
    """The overview page."""
    ctx = context_of(request)
    control = control_of(request)
    made = await read_only(request, lambda: gather(ctx.store, control, ctx.settings, viewer))
    return render(request, "overview.html", viewer, page="overview", view=made)
