"""The Kubernetes target's replica resources: pods and PodMetrics read from an in-memory
stand-in of the cluster's API (tests/unit/deploy/test_kubernetes.py's ``FakeCluster``),
mapped to samples; quantities parsed; failures reported, never raised."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from loopml.core.deployments import Deployment
from loopml.core.errors import PermissionDeniedError, ServiceUnavailableError
from loopml.deploy import DeploymentControl
from loopml.deploy.replicas import deployment_replicas, replica_samples
from loopml.deploy.targets._k8s_resources import PodMeter, parse_quantity
from loopml.deploy.targets.kubernetes import KubernetesTarget, Manifest
from loopml.monitor.engine import Monitor
from loopml.monitor.metrics import MonitorCollector
from loopml.settings import MonitorSettings
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore
from tests.unit.deploy.deploy_support import package_files, register_files
from tests.unit.deploy.test_kubernetes import (
    IMAGE,
    URL,
    FakeCluster,
    canary_deployment,
    make_deployment,
    packages_of,
)

LOGGER = "loopml.deploy.kubernetes"


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_pod(
    cluster: FakeCluster,
    deployment: Deployment,
    revision: int,
    name: str,
    *,
    ready: bool = True,
    restarts: tuple[int, ...] = (0,),
    started_s: float | None = 100.0,
    phase: str = "Running",
    **meta: Any,
) -> Manifest:
    """A pod as the cluster would make it from the revision's Deployment template."""
    workload = cluster.objects[("Deployment", "default", f"{deployment.name}-r{revision}")]
    template = workload["spec"]["template"]["metadata"]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [
            {"name": f"c{i}", "restartCount": count} for i, count in enumerate(restarts)
        ],
    }
    if started_s is not None:
        status["startTime"] = _ago(started_s)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": dict(template["labels"]),
            "annotations": dict(template["annotations"]),
            **meta,
        },
        "status": status,
    }
    cluster.objects[("Pod", "default", name)] = pod
    return pod


def add_metrics(cluster: FakeCluster, pod: Manifest, *usages: tuple[str, str]) -> None:
    """The pod's PodMetrics, as metrics-server serves it (the pod's labels copied)."""
    meta = pod["metadata"]
    cluster.objects[("PodMetrics", "default", meta["name"])] = {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": meta["name"], "namespace": "default", "labels": meta["labels"]},
        "window": "15s",
        "containers": [
            {"name": f"c{i}", "usage": {"cpu": cpu, "memory": memory}}
            for i, (cpu, memory) in enumerate(usages)
        ],
    }


class CountingCluster(FakeCluster):
    """The stand-in, counting list calls by kind and refusing the kinds in ``refuse``."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: list[str] = []
        self.refuse: dict[str, Exception] = {}

    def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Manifest]:
        self.lists.append(kind)
        if kind in self.refuse:
            raise self.refuse[kind]
        return super().list(api_version, kind, namespace, selector)


def applied(*deployments: Deployment) -> tuple[CountingCluster, KubernetesTarget]:
    cluster = CountingCluster()
    target = KubernetesTarget(image=IMAGE, platform_url=URL, api=cluster)
    for deployment in deployments:
        target.apply(deployment, packages_of(deployment))
    return cluster, target


# ---------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("250m", Decimal("0.25")),
        ("2", Decimal(2)),
        ("1.5", Decimal("1.5")),
        ("512Ki", Decimal(512 * 1024)),
        ("123456Ki", Decimal(123456 * 1024)),
        ("128Mi", Decimal(128 * 1024**2)),
        ("1Gi", Decimal(1024**3)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("1E", Decimal(10**18)),
        ("2.5e-3", Decimal("0.0025")),
        ("15000n", Decimal("0.000015")),
        ("20u", Decimal("0.00002")),
        ("1k", Decimal(1000)),
        ("0", Decimal(0)),
        (".5", Decimal("0.5")),
    ],
)
def test_quantities_parse_to_base_units(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "m", "1.5.2", "12KB", "1Ki5", "abc", "1 Gi", "1ki", "e3"])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


# ---------------------------------------------------------------- samples


def test_pods_and_their_metrics_become_samples_in_two_list_calls() -> None:
    canary, other = canary_deployment(), make_deployment(name="fraud")
    cluster, target = applied(canary, other)
    b = add_pod(cluster, canary, 1, "churn-prod-r1-b", restarts=(2, 1), started_s=120)
    a = add_pod(cluster, canary, 1, "churn-prod-r1-a", ready=False, started_s=5)
    c = add_pod(cluster, canary, 2, "churn-prod-r2-x")
    f = add_pod(cluster, other, 1, "fraud-r1-x")
    add_metrics(cluster, b, ("250m", "128Mi"), ("1", "512Ki"))
    add_metrics(cluster, a, ("15000000n", "123456Ki"))
    add_metrics(cluster, c, ("2", "1Gi"))
    add_metrics(cluster, f, ("0", "0"))
    cluster.lists.clear()

    samples = target.resources()

    assert sorted(cluster.lists) == ["Pod", "PodMetrics"]  # one each, not one per deployment
    got = {(s.deployment, s.slot): s for s in samples}
    assert sorted(got) == [
        ("churn-prod", "r1/0"),
        ("churn-prod", "r1/1"),
        ("churn-prod", "r2/0"),
        ("fraud", "r1/0"),
    ]
    first, second = got[("churn-prod", "r1/0")], got[("churn-prod", "r1/1")]
    assert (first.state, first.restarts, first.cpu_percent, first.rss_bytes) == (
        "starting",
        0,
        1.5,
        123456 * 1024,
    )
    assert (second.state, second.restarts, second.cpu_percent) == ("ready", 3, 125.0)
    assert second.rss_bytes == 128 * 1024**2 + 512 * 1024
    assert 119 <= second.uptime_s <= 125
    assert 4 <= first.uptime_s <= 10
    assert (second.project, second.model, second.version, second.revision) == (
        "default",
        "churn",
        3,
        1,
    )
    canary_pod = got[("churn-prod", "r2/0")]
    assert (canary_pod.version, canary_pod.cpu_percent, canary_pod.rss_bytes) == (4, 200.0, 2**30)
    for sample in samples:
        assert sample.measured
        assert sample.pid is None
        assert sample.connections == 0
    assert target.unmeasured_reason() == ""


def test_pods_that_ended_are_left_out_and_deleted_ones_are_stopping() -> None:
    deployment = make_deployment()
    cluster, target = applied(deployment)
    add_pod(cluster, deployment, 1, "churn-prod-r1-a", phase="Failed")  # evicted
    add_pod(cluster, deployment, 1, "churn-prod-r1-b", deletionTimestamp=_ago(1))
    add_pod(cluster, deployment, 1, "churn-prod-r1-c", phase="Pending", ready=False)

    samples = target.resources()

    assert [(s.slot, s.state) for s in samples] == [("r1/0", "stopping"), ("r1/1", "starting")]


def test_uptime_counts_from_the_servers_container_start_after_a_restart() -> None:
    deployment = make_deployment()
    cluster, target = applied(deployment)
    pod = add_pod(cluster, deployment, 1, "churn-prod-r1-a", restarts=(1,), started_s=600)
    pod["status"]["containerStatuses"] = [
        {"name": "model-server", "restartCount": 1, "state": {"running": {"startedAt": _ago(30)}}}
    ]
    no_start = add_pod(cluster, deployment, 1, "churn-prod-r1-b", started_s=None)

    first, second = target.resources()

    assert 29 <= first.uptime_s <= 35
    assert first.restarts == 1
    assert second.uptime_s == 0.0
    assert no_start["status"].get("startTime") is None


def test_names_a_label_cannot_hold_come_from_the_pods_annotations() -> None:
    deployment = make_deployment(project="team_a_")  # a label value may not end in "_"
    cluster, target = applied(deployment)
    pod = add_pod(cluster, deployment, 1, "churn-prod-r1-a")
    assert pod["metadata"]["labels"]["loopml.io/project"] != "team_a_"

    [sample] = target.resources()

    assert sample.project == "team_a_"


def test_without_the_metrics_api_state_and_restarts_are_still_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deployment = make_deployment()
    cluster, target = applied(deployment)
    add_pod(cluster, deployment, 1, "churn-prod-r1-a", restarts=(4,))

    [absent] = target.resources()  # metrics.k8s.io not installed: no PodMetrics at all
    assert (absent.state, absent.restarts, absent.measured) == ("ready", 4, False)
    assert (absent.cpu_percent, absent.rss_bytes) == (0.0, 0)

    cluster.refuse["PodMetrics"] = PermissionDeniedError("403 Forbidden")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        [refused] = target.resources()
        target.resources()
    assert (refused.state, refused.restarts, refused.measured) == ("ready", 4, False)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "metrics API" in warnings[0]
    assert target.unmeasured_reason() == ""  # the pods were read


@pytest.mark.parametrize(
    "error", [ServiceUnavailableError("connection refused"), TimeoutError("timed out")]
)
def test_an_api_that_fails_gives_no_samples_and_no_error(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = make_deployment()
    cluster, target = applied(deployment)
    add_pod(cluster, deployment, 1, "churn-prod-r1-a")
    cluster.refuse["Pod"] = error

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert target.resources() == []
    assert str(error) in target.unmeasured_reason()
    assert len(caplog.records) == 1

    del cluster.refuse["Pod"]
    assert len(target.resources()) == 1
    assert target.unmeasured_reason() == ""


def test_a_failing_api_is_warned_about_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = CountingCluster()
    cluster.refuse["Pod"] = ServiceUnavailableError("connection refused")
    now = [0.0]
    meter = PodMeter("default", clock=lambda: now[0])

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for at in (0.0, 10.0, 59.0, 60.0, 61.0, 125.0):
            now[0] = at
            assert meter.read(lambda: cluster) == []
    assert len(caplog.records) == 3  # at 0, 60 and 125


def test_rendering_only_reports_nothing_and_says_why(tmp_path: Path) -> None:
    target = KubernetesTarget(image=IMAGE, platform_url=URL, kubeconfig=tmp_path / "missing")

    assert target.resources() == []
    reason = target.unmeasured_reason()
    assert reason.startswith("the kubernetes target only renders manifests here")
    assert "LOOPML_KUBERNETES_KUBECONFIG" in reason


# ---------------------------------------------------------------- the replicas route's service


@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[DeploymentControl, CountingCluster]]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'loopml.db'}")
    store.upgrade()
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    register_files(store, artifacts, package_files(tmp_path / "pkg"))
    cluster = CountingCluster()
    target = KubernetesTarget(image=IMAGE, platform_url=URL, api=cluster)
    yield DeploymentControl(store, artifacts, {"kubernetes": target}, tmp_path / "d"), cluster
    store.dispose()


def test_the_replicas_service_shows_pods_or_why_it_cannot(
    control: tuple[DeploymentControl, CountingCluster],
) -> None:
    plane, cluster = control
    deployment = plane.create(
        "default", "cancer-api", {"model": "cancer/1", "target": "kubernetes"}, actor="t"
    )
    add_pod(cluster, deployment, 1, "cancer-api-r1-a", restarts=(1,))

    listed = deployment_replicas(plane, "default", "cancer-api")
    assert listed.measured
    assert [(s.model, s.restarts) for s in listed.items] == [("cancer", 1)]

    cluster.refuse["Pod"] = PermissionDeniedError("403 Forbidden: pods is forbidden")
    refused = deployment_replicas(plane, "default", "cancer-api")
    assert (refused.measured, refused.items) == (False, [])
    assert "403 Forbidden" in refused.reason


def test_the_gauges_leave_out_cpu_and_memory_no_metrics_api_measured(
    control: tuple[DeploymentControl, CountingCluster],
) -> None:
    plane, cluster = control
    spec = {"model": "cancer/1", "target": "kubernetes"}
    deployment = plane.create("default", "cancer-api", spec, actor="t")
    measured = add_pod(cluster, deployment, 1, "cancer-api-r1-a")
    add_pod(cluster, deployment, 1, "cancer-api-r1-b")
    add_metrics(cluster, measured, ("500m", "64Mi"))
    monitor = Monitor(
        plane.store, plane.artifacts, MonitorSettings(), resources=lambda: replica_samples(plane)
    )
    monitor.tick()

    gauges = {
        (family.name, sample.labels["replica"]): sample.value
        for family in MonitorCollector(monitor).collect()
        if family.name.startswith("loopml_replica_")
        for sample in family.samples
    }
    assert gauges[("loopml_replica_cpu_percent", "0")] == 50.0
    assert gauges[("loopml_replica_rss_bytes", "0")] == 64 * 1024**2
    assert ("loopml_replica_cpu_percent", "1") not in gauges
    assert ("loopml_replica_rss_bytes", "1") not in gauges
    assert gauges[("loopml_replica_restarts", "1")] == 0
