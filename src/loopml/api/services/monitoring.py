"""The monitor embedded in every API server: its loop, its error counts (read from the
gateway's request counter), its requests per caller (the gateway's in-memory counts), its
replica samples (from the deploy targets that measure them)
and its gauges on the gateway's ``/metrics``; a deployment's replicas measured now."""

from __future__ import annotations

from pydantic import BaseModel, Field

from loopml.api.context import AppContext
from loopml.core.resources import ReplicaSample
from loopml.deploy import DeploymentControl
from loopml.deploy.targets.base import ExplainsResources, ReportsResources
from loopml.monitor.engine import Monitor, MonitorThread
from loopml.monitor.metrics import MonitorCollector
from loopml.serve.gateway.metrics import CallerKey, GatewayMetrics

ErrorKey = tuple[str, str, str, str, str]


def gateway_errors(metrics: GatewayMetrics) -> dict[ErrorKey, float]:
    """Failed requests so far by (project, deployment, model, version, status)."""
    counts: dict[ErrorKey, float] = {}
    for family in metrics.requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            if not labels.get("status", "0").isdigit() or int(labels["status"]) < 400:
                continue
            key = (
                labels["project"],
                labels["deployment"],
                labels["model"],
                labels["version"],
                labels["status"],
            )
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def gateway_callers(metrics: GatewayMetrics) -> dict[CallerKey, float]:
    """Requests so far by (project, deployment, model, version, caller)."""
    return {key: float(count) for key, count in metrics.callers.copy().items()}


def replica_samples(control: DeploymentControl) -> list[ReplicaSample]:
    """Every replica measured now, on every target that can measure its replicas."""
    samples: list[ReplicaSample] = []
    for target in control.targets.values():
        if isinstance(target, ReportsResources):
            samples.extend(target.resources())
    return samples


class ReplicaList(BaseModel):
    """A deployment's replicas measured now."""

    items: list[ReplicaSample]
    measured: bool = Field(description="False when its target cannot measure replicas.")
    reason: str = Field(default="", description="Why they are not measured.")


def deployment_replicas(control: DeploymentControl, project: str, name: str) -> ReplicaList:
    """The deployment's replicas with the resources they use now.

    Raises:
        NotFoundError: no such project or deployment.
    """
    deployment = control.get(project, name)
    target = control.targets.get(deployment.spec.target)
    if not isinstance(target, ReportsResources):
        return ReplicaList(
            items=[],
            measured=False,
            reason=f"the {deployment.spec.target!r} target does not measure its replicas",
        )
    found = [s for s in target.resources() if (s.project, s.deployment) == (project, name)]
    reason = target.unmeasured_reason() if isinstance(target, ExplainsResources) else ""
    if reason:
        return ReplicaList(items=[], measured=False, reason=reason)
    found.sort(key=lambda s: (s.revision, s.replica))
    return ReplicaList(items=found, measured=True)


def start_monitor(
    ctx: AppContext, metrics: GatewayMetrics, control: DeploymentControl
) -> MonitorThread | None:
    """Run the monitor in a background thread (unless ``monitor.enabled`` is off) and add
    its gauges to the gateway's registry."""
    if not ctx.settings.monitor.enabled:
        return None
    monitor = Monitor(
        ctx.store,
        ctx.artifacts,
        ctx.settings.monitor,
        errors=lambda: gateway_errors(metrics),
        callers=lambda: gateway_callers(metrics),
        resources=lambda: replica_samples(control),
    )
    metrics.registry.register(MonitorCollector(monitor))
    return MonitorThread(monitor).start()
