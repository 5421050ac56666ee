"""What the local target knows of each deployment: the revisions wanted and serving, their
replicas, and the status they add up to. The supervisor (``local.LocalDeployTarget``) changes
it, under its lock."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from loopml.core.deployments import Deployment, DeploymentStatus
from loopml.core.errors import ConflictError
from loopml.deploy.targets._autoscale import AutoscalePolicy, Autoscaler
from loopml.deploy.targets._process import Replica, ReplicaState, log_line
from loopml.deploy.targets.base import RevisionPackage, TargetStatus
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes

Key = tuple[str, str]
LOG_NAME = "replicas.log"


class Group:
    """The replicas of one revision."""

    def __init__(self, package: RevisionPackage) -> None:
        self.package = package
        self.wanted = 0
        self.replicas: list[Replica] = []
        self.streak = 0  # exits since a replica of this revision was last ready
        self.last_error = ""

    @property
    def label(self) -> str:
        return f"revision {self.package.revision} ({self.package.model}/{self.package.version})"

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas if r.state == ReplicaState.READY]

    def failing(self, after: int) -> bool:
        return self.streak >= after and not self.ready()


class Managed:
    """One deployment: what is wanted, what serves, and its replicas."""

    def __init__(self, deployment: Deployment, folder: Path, policy: AutoscalePolicy) -> None:
        self.key: Key = (deployment.project, deployment.name)
        self.deployment = deployment
        self.folder = folder
        self.log_path = folder / LOG_NAME
        self.packages: dict[int, RevisionPackage] = {}
        self.groups: dict[int, Group] = {}
        self.desired: dict[int, int] = {}
        self.desired_shadow: int | None = None
        self.serving: dict[int, int] = {}
        self.serving_shadow: int | None = None
        self.asleep = deployment.spec.min_replicas == 0
        self.last_request = time.monotonic()
        self.deleting = False
        self.gone = threading.Event()
        self.routes: Routes | None = None
        self.scaler = Autoscaler(policy, max(deployment.spec.min_replicas, 1), time.monotonic())

    def want(self, deployment: Deployment, packages: Iterable[RevisionPackage]) -> None:
        for package in packages:
            self.packages[package.revision] = package
        traffic = {r: p for r, p in deployment.traffic.items() if p > 0}
        needed = with_shadow(traffic, deployment.shadow_revision)
        missing = sorted(r for r in needed if r not in self.packages)
        if missing:
            raise ConflictError(
                f"deployment {deployment.name!r}: no package given for revision(s) {missing}",
                details={"deployment": deployment.name, "revisions": missing},
            )
        self.deployment = deployment
        self.desired = traffic
        self.desired_shadow = deployment.shadow_revision
        if deployment.spec.min_replicas > 0:
            self.asleep = False

    def inflight(self) -> int:
        return sum(
            r.backend.load
            for g in self.groups.values()
            for r in g.replicas
            if r.backend is not None
        )

    def ready_count(self, revision: int) -> int:
        group = self.groups.get(revision)
        return len(group.ready()) if group else 0

    def autoscale(self, now: float) -> None:
        """Let the autoscaler see the requests in flight now (it logs a change of count)."""
        spec = self.deployment.spec
        low = max(spec.min_replicas, 1)
        before = self.scaler.replicas
        after = self.scaler.observe(self.inflight(), low, max(spec.max_replicas, low), now)
        if after != before:
            log_line(
                self.log_path,
                f"autoscale: {before} -> {after} replicas "
                f"({self.scaler.average:.1f} requests in flight on average)",
            )

    def wanted_replicas(self) -> dict[int, int]:
        """Replicas per wanted revision: its share of the autoscaler's count (at least one),
        and one for the shadow."""
        n = self.scaler.replicas
        wanted = {r: max(1, math.ceil(n * p / 100)) for r, p in self.desired.items()}
        if self.desired_shadow is not None:
            wanted.setdefault(self.desired_shadow, 1)
        return wanted

    def route(self, revision: int, weight: int) -> RevisionRoute:
        """The revision's route: its ready replicas, with ``weight`` of the traffic."""
        package = self.packages[revision]
        group = self.groups.get(revision)
        backends: tuple[Backend, ...] = ()
        if group is not None:
            backends = tuple(r.backend for r in group.ready() if r.backend is not None)
        role = roles_of(self.deployment).get(revision, "primary")
        return RevisionRoute(revision, package.model, package.version, weight, backends, role)


def status_of(managed: Managed, failed_after: int) -> TargetStatus:
    """The deployment's status as its replicas make it (``failed_after``: consecutive failed
    starts before a revision counts as failed): the first of asleep, failing, rolling out,
    short of replicas that applies, else ready (saying which revisions run degraded)."""
    ready = sum(len(g.ready()) for g in managed.groups.values())
    if managed.asleep:
        return TargetStatus(
            DeploymentStatus.SCALED_TO_ZERO, "no replica runs; the next request starts one", 0
        )
    counts = {r: (managed.ready_count(r), g.wanted) for r, g in managed.groups.items()}
    found = (
        _failing_status(managed, failed_after, ready)
        or _rollout_status(managed, counts, ready)
        or _short_status(managed, counts, ready)
    )
    if found is not None:
        return found
    degraded = [
        f"revision {r}: {have}/{want} ready"
        for r, (have, want) in sorted(counts.items())
        if have < want
    ]
    return TargetStatus(DeploymentStatus.READY, "; ".join(degraded), ready)


_Counts = dict[int, tuple[int, int]]


def _failing_status(managed: Managed, failed_after: int, ready: int) -> TargetStatus | None:
    wanted = with_shadow(managed.desired, managed.desired_shadow)
    failing = [
        managed.groups[r]
        for r in sorted(wanted)
        if r in managed.groups and managed.groups[r].failing(failed_after)
    ]
    if not failing:
        return None
    group = failing[0]
    serves = (
        f"; revision(s) {sorted(managed.serving)} keep serving"
        if managed.serving != managed.desired
        else ""
    )
    why = f": {group.last_error}" if group.last_error else ""
    return TargetStatus(
        DeploymentStatus.FAILED,
        f"{group.label} does not start (restarting with backoff){serves}{why}",
        ready,
    )


def _rollout_status(managed: Managed, counts: _Counts, ready: int) -> TargetStatus | None:
    if managed.serving == managed.desired:
        return None
    progress = ", ".join(
        f"revision {r}: {counts.get(r, (0, 0))[0]}/{counts.get(r, (0, 0))[1]} ready"
        for r in sorted(managed.desired)
    )
    message = (
        f"rolling out {show(managed.desired)} ({progress}); {show(managed.serving)} "
        "serves meanwhile"
        if managed.serving
        else f"starting ({progress})"
    )
    return TargetStatus(DeploymentStatus.PENDING, message, ready)


def _short_status(managed: Managed, counts: _Counts, ready: int) -> TargetStatus | None:
    short = [r for r in sorted(managed.serving) if counts.get(r, (0, 1))[0] == 0]
    if not short:
        return None
    return TargetStatus(
        DeploymentStatus.PENDING, f"revision(s) {short} have no ready replica yet", ready
    )


def roles_of(deployment: Deployment) -> dict[int, str]:
    """Each served revision's role: the shadow; with a canary in the spec and two revisions
    taking traffic, the one taking the canary's percent (the newer one on a 50/50 tie);
    otherwise the primary. A replica keeps the role it started with until it restarts."""
    traffic = deployment.traffic
    roles = dict.fromkeys(traffic, "primary")
    canary = deployment.spec.canary
    if canary is not None and len(traffic) == 2:
        primary_share = 100 - canary.percent
        ordered = sorted(traffic, key=lambda r: (traffic[r] != primary_share, r))
        roles[ordered[1]] = "canary"
    if deployment.shadow_revision is not None:
        roles[deployment.shadow_revision] = "shadow"
    return roles


def with_shadow(traffic: dict[int, int], shadow: int | None) -> set[int]:
    return set(traffic) if shadow is None else {*traffic, shadow}


def show(traffic: dict[int, int]) -> str:
    return "{" + ", ".join(f"revision {r}: {p}%" for r, p in sorted(traffic.items())) + "}"
