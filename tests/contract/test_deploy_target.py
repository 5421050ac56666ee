"""The one contract every ``DeployTarget`` passes: the local target (real model-server
processes) and the Kubernetes target (against an in-memory stand-in of the cluster's API,
never loopml's own code). Whatever the target: applying a deployment runs exactly the
revisions that take traffic, a change of traffic stops the revision that lost it, applying
twice changes nothing, and delete stops everything, twice as well as once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopml.core.deployments import Deployment, DeploymentSpec, DeploymentStatus, Revision
from loopml.deploy.targets.base import DeployTarget, RevisionPackage
from loopml.deploy.targets.kubernetes import KubernetesTarget
from loopml.deploy.targets.local import LocalDeployTarget, LocalTargetConfig
from tests.unit.deploy.deploy_support import package_files
from tests.unit.deploy.test_kubernetes import FakeCluster
from tests.waiting import eventually

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Backend:
    """A target plus what only its kind can tell or do."""

    target: DeployTarget
    packages: Callable[[Deployment], list[RevisionPackage]]
    running: Callable[[Deployment], set[int]]  # the revisions that run now
    settle: Callable[[Deployment], None]  # until what was applied runs (or is gone)


def _revision(number: int, role: str = "primary") -> Revision:
    return Revision(
        number=number,
        model="churn",
        version=number,
        ref=f"churn/{number}",
        role=role,  # type: ignore[arg-type]
        created_at=NOW,
    )


def _deployment(target: str, traffic: dict[int, int], name: str = "churn-prod") -> Deployment:
    canary = len(traffic) == 2
    return Deployment(
        id=f"dep-{name}",
        project="default",
        name=name,
        spec=DeploymentSpec(
            model="churn/1",
            target=target,  # type: ignore[arg-type]
            canary={"model": "churn/2", "percent": traffic[2]} if canary else None,
        ),
        status=DeploymentStatus.PENDING,
        traffic=traffic,
        revisions=[_revision(1), _revision(2, "canary" if canary else "primary")],
        created_at=NOW,
        updated_at=NOW,
    )


def _wait(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    eventually(check, timeout, what, interval_s=0.1)


@pytest.fixture(scope="module")
def local_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, str]]:
    """Two real model packages on disk (revisions 1 and 2) and their manifest hashes."""
    root = tmp_path_factory.mktemp("packages")
    found = {}
    for revision, c in ((1, 1.0), (2, 0.5)):
        made = package_files(root / f"build-{revision}", c=c)
        folder = root / str(revision)
        folder.mkdir()
        for name, data in made.files.items():
            (folder / name).write_bytes(data)
        (folder / "loopml-model.json").write_bytes(made.manifest)
        found[revision] = (folder, hashlib.sha256(made.manifest).hexdigest())
    return found


def _local(tmp_path: Path, packages: dict[int, tuple[Path, str]]) -> Iterator[Backend]:
    target = LocalDeployTarget(tmp_path / "deployments", LocalTargetConfig(start_timeout_s=120))
    target.start()

    def running(deployment: Deployment) -> set[int]:
        routes = target.routes(deployment.project, deployment.name)
        return {r.number for r in routes.revisions if r.usable()} if routes else set()

    def settle(deployment: Deployment) -> None:
        wanted = set(deployment.traffic)
        _wait(lambda: running(deployment) == wanted, f"revisions {wanted} serve")

    try:
        yield Backend(
            target,
            lambda d: [
                RevisionPackage(
                    r.number, r.model, r.version, packages[r.number][1], str(packages[r.number][0])
                )
                for r in d.revisions
            ],
            running,
            settle,
        )
    finally:
        target.close()


def _kubernetes() -> Backend:
    cluster = FakeCluster()
    target = KubernetesTarget(
        image="registry.example.com/loopml:0.1.0", platform_url="http://loopml:8765", api=cluster
    )

    def running(deployment: Deployment) -> set[int]:
        prefix = f"{deployment.name}-r"
        return {
            int(name.removeprefix(prefix))
            for kind, _, name in cluster.objects
            if kind == "Deployment" and name.startswith(prefix)
        }

    def settle(deployment: Deployment) -> None:
        # The cluster's controllers would start the pods: mark each Deployment ready.
        for (kind, _, name), manifest in cluster.objects.items():
            if kind == "Deployment" and name.startswith(f"{deployment.name}-r"):
                manifest["status"] = {"readyReplicas": 1}

    return Backend(
        target,
        lambda d: [RevisionPackage(r.number, r.model, r.version, "a" * 64) for r in d.revisions],
        running,
        settle,
    )


@pytest.fixture(params=["local", "kubernetes"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    local_packages: dict[int, tuple[Path, str]],
) -> Iterator[Backend]:
    if request.param == "local":
        yield from _local(tmp_path, local_packages)
    else:
        yield _kubernetes()


def _target_name(backend: Backend) -> str:
    return "local" if isinstance(backend.target, LocalDeployTarget) else "kubernetes"


def test_apply_runs_the_revisions_with_traffic_and_moves_with_it(backend: Backend) -> None:
    name = _target_name(backend)
    canary = _deployment(name, {1: 90, 2: 10})
    backend.target.apply(canary, backend.packages(canary))
    backend.settle(canary)
    assert backend.running(canary) == {1, 2}
    assert backend.target.ready_replicas(canary) >= 2

    promoted = _deployment(name, {2: 100})
    backend.target.apply(promoted, backend.packages(promoted))
    backend.settle(promoted)
    _wait(lambda: backend.running(promoted) == {2}, "revision 1 stopped", timeout=60)

    backend.target.apply(promoted, backend.packages(promoted))  # idempotent
    backend.settle(promoted)
    assert backend.running(promoted) == {2}
    assert backend.target.ready_replicas(promoted) >= 1


def test_delete_stops_everything_and_is_idempotent(backend: Backend) -> None:
    deployment = _deployment(_target_name(backend), {1: 100})
    backend.target.apply(deployment, backend.packages(deployment))
    backend.settle(deployment)
    assert backend.target.ready_replicas(deployment) >= 1

    backend.target.delete(deployment)
    _wait(lambda: backend.running(deployment) == set(), "nothing runs")
    assert backend.target.ready_replicas(deployment) == 0
    backend.target.delete(deployment)
    assert backend.target.ready_replicas(deployment) == 0


def test_an_unknown_deployment_has_no_replicas_and_deletes_quietly(backend: Backend) -> None:
    never: Any = _deployment(_target_name(backend), {1: 100}, name="never-applied")
    assert backend.target.ready_replicas(never) == 0
    backend.target.delete(never)
    assert backend.running(never) == set()
