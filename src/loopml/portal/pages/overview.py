"""The overview (``/``): deployments by state with their traffic and resources, firing
alerts, recent pipeline runs and the activity feed, over every project the viewer sees."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loopml import events, projects
from loopml.core.alerts import AlertRule
from loopml.core.clock import utcnow
from loopml.core.pipelines import PipelineRun
from loopml.core.types import Event
from loopml.deploy import DeploymentControl
from loopml.deploy.replicas import replica_samples
from loopml.faces.context import MetadataStore
from loopml.monitor import service as monitor
from loopml.monitor.windows import parse_size, window_start
from loopml.pipelines import service as pipelines
from loopml.portal.viewer import (
    PageRoute,
    Viewer,
    ViewerDep,
    context_of,
    control_of,
    read_only,
    render,
)
from loopml.settings import Settings

router = APIRouter(route_class=PageRoute, include_in_schema=False)
MAX_DEPLOYMENTS = 500
"""Most deployments listed per project on the overview (the rest are counted)."""
FEED = 20
"""Events (lines of the activity feed) and pipeline runs shown."""
FEED_READ = 500
"""Newest events read for the feed: repeats (a table appended to once a second) fold into
one line, so the feed's lines reach further back than its first 20 events."""


@dataclass
class FeedLine:
    """One line of the activity feed: an event, or a run of the same one repeated (same
    type, subject, project and actor, nothing else between them)."""

    event: Event  # the newest of them
    count: int = 1
    oldest: datetime | None = None  # the oldest one's time, when more than one


def fold_repeats(found: list[Event], lines: int) -> list[FeedLine]:
    """``found`` (newest first) as at most ``lines`` feed lines, repeats folded."""
    folded: list[FeedLine] = []
    for event in found:
        last = folded[-1] if folded else None
        same = (event.type, event.subject, event.project, event.actor)
        if last is not None and same == (
            last.event.type,
            last.event.subject,
            last.event.project,
            last.event.actor,
        ):
            last.count += 1
            last.oldest = event.time
            continue
        if len(folded) == lines:
            break
        folded.append(FeedLine(event))
    return folded


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
    feed: list[FeedLine] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)


HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def _spans(settings: Settings, now: datetime) -> list[tuple[str, datetime]]:
    """What the "last hour" and "last day" tiles sum: the windows overlapping the trailing
    60 minutes and 24 hours before ``now``, of the smallest size stored (the usage-only
    minutes, else the smallest of ``monitor.windows``) for the hour and the smallest of
    ``monitor.windows`` for the day. Summing the windows that start after ``now - 1 h``
    read only the clock hour under way: 0 requests half an hour after 2,140 (issue 55)."""
    judged = min(settings.monitor.windows, key=parse_size)
    usage = settings.monitor.usage_size()
    sizes = ((usage[0] if usage else judged, HOUR), (judged, DAY))
    return [(size, window_start(now - span, parse_size(size))) for size, span in sizes]


def gather(
    store: MetadataStore,
    control: DeploymentControl,
    settings: Settings,
    viewer: Viewer,
    now: datetime | None = None,
) -> Overview:
    """Read everything the overview shows (blocking: run it in a worker thread), one query
    per kind whatever the number of projects and deployments: the projects, the
    deployments, their windows of both sizes, the firing rules, the pipeline runs and the
    events. Inside ``read_only`` they share one read-only transaction. ``now``: where the
    tiles' trailing hour and day end (the clock's now unless given)."""
    made = Overview()
    now = now or utcnow()
    listed = projects.list_(store, limit=1000).items
    made.projects = viewer.visible([p.name for p in listed])
    if not made.projects:
        return made
    found = control.list_in(made.projects, limit_each=MAX_DEPLOYMENTS)
    now_used = _resources_now(control)
    hour, day = monitor.projects_usage(store, made.projects, _spans(settings, now))
    for deployment in found:
        key = (deployment.project, deployment.name)
        used_hour, used_day = hour.get(key, {}), day.get(key, {})
        made.states[deployment.status.value] += 1
        for total, used in ((made.hour, used_hour), (made.day, used_day)):
            total["requests"] += used.get("requests", 0)
            total["errors"] += used.get("errors", 0)
        # The replicas running now and what they use now: the tile is the rows' sum (the
        # hour's windows also hold replicas stopped since, which the tile once counted).
        used_now = now_used.get(key, {"replicas": 0, "cpu_percent": 0.0, "rss_mb": 0.0})
        made.replicas += used_now["replicas"]
        made.cpu_percent += used_now["cpu_percent"]
        made.rss_mb += used_now["rss_mb"]
        made.deployments.append(
            {"deployment": deployment, "hour": used_hour, "day": used_day, "now": used_now}
        )
    made.firing = monitor.firing_rules(store, made.projects)
    made.runs = pipelines.recent_runs(store, made.projects, limit=FEED)
    recent = events.list_events(
        store, projects=made.projects, limit=FEED_READ, newest_first=True
    ).items
    made.feed = fold_repeats(sorted(recent, key=lambda e: e.time, reverse=True), FEED)
    return made


def _resources_now(control: DeploymentControl) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (project, deployment): its replicas running now, their CPU (% of one core,
    summed) and resident memory (MB, summed), measured now on the targets that measure
    them."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for sample in replica_samples(control):
        entry = found.setdefault(
            (sample.project, sample.deployment), {"replicas": 0, "cpu_percent": 0.0, "rss_mb": 0.0}
        )
        entry["replicas"] += 1
        if sample.measured:
            entry["cpu_percent"] += sample.cpu_percent
            entry["rss_mb"] += sample.rss_bytes / 1_048_576
    return found


@router.get("/")
async def overview(request: Request, viewer: ViewerDep) -> Response:
    """The overview page."""
    ctx = context_of(request)
    control = control_of(request)
    made = await read_only(request, lambda: gather(ctx.store, control, ctx.settings, viewer))
    return render(request, "overview.html", viewer, page="overview", view=made)
