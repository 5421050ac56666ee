"""The monitor embedded in every platform server: its loop, its error counts (read from the
gateway's request counter), its requests per caller (the gateway's in-memory counts), its
replica samples (``deploy.replicas``) and its gauges on the gateway's ``/metrics``."""

from __future__ import annotations

from loopml.deploy import DeploymentControl
from loopml.deploy.replicas import replica_samples
from loopml.monitor.engine import Monitor, MonitorThread
from loopml.monitor.metrics import MonitorCollector
from loopml.serve.gateway.metrics import CallerKey, GatewayMetrics
from loopml.web.context import AppContext

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
