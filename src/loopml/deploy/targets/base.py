"""The interface every deploy target implements.

The control plane decides *what* a deployment serves (revisions, traffic, replicas); a
target makes it run somewhere. ``local`` runs model-server processes supervised by the
platform behind its gateway; ``kubernetes`` renders (and, with a kubeconfig, applies)
Deployment, Service and HorizontalPodAutoscaler objects, or a KServe InferenceService.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from loopml.core.deployments import Deployment, DeploymentStatus
from loopml.core.logs import LogQuery
from loopml.core.resources import ReplicaSample


@dataclass(frozen=True)
class RevisionPackage:
    """Where a revision's model package is, for a target to load it.

    Attributes:
        revision: the revision number.
        model: the registered model's name; ``version`` its version.
        manifest_sha256: the registry's anchor hash; the server refuses any other package.
        path: a local folder holding the fetched package (local target), or ``None`` when
            the replica fetches it itself from the platform (Kubernetes).
    """

    revision: int
    model: str
    version: int
    manifest_sha256: str
    path: str | None = None


class DeployTarget(Protocol):
    """Runs deployments somewhere."""

    name: str

    def apply(self, deployment: Deployment, packages: list[RevisionPackage]) -> None:
        """Make the running state match ``deployment`` (its traffic, shadow and replica
        counts), starting revisions in ``packages`` that do not run yet and stopping
        revisions that no longer get traffic; idempotent."""

    def delete(self, deployment: Deployment) -> None:
        """Stop everything the deployment runs; idempotent."""

    def ready_replicas(self, deployment: Deployment) -> int:
        """How many replicas of the deployment answer now."""


@dataclass(frozen=True)
class TargetStatus:
    """What a target reports about one deployment.

    Attributes:
        status: ``ready`` when every revision that gets traffic answers, ``pending`` while
            replicas start or a swap is under way, ``failed`` when a revision does not start
            (the previous one keeps serving, if any), ``scaled_to_zero`` when idle.
        message: why it is pending or failed, or what is degraded.
        replicas_ready: replicas answering now.
    """

    status: DeploymentStatus
    message: str
    replicas_ready: int


@runtime_checkable
class ReportsStatus(Protocol):
    """A target that can say more than how many replicas answer (optional capability)."""

    def status(self, deployment: Deployment) -> TargetStatus:
        """Where ``deployment`` stands on this target."""
        ...


@runtime_checkable
class ProvidesLogs(Protocol):
    """A target that keeps its replicas' output (optional capability)."""

    def logs(self, deployment: Deployment, tail: int, query: LogQuery | None = None) -> list[str]:
        """The last ``tail`` lines its replicas wrote that ``query`` keeps (all of them when
        it is ``None``; empty when it runs nothing)."""
        ...


@runtime_checkable
class ReportsResources(Protocol):
    """A target that can measure its replicas (optional capability)."""

    def resources(self) -> list[ReplicaSample]:
        """CPU, memory, connections and restarts of every replica it runs, now."""
        ...


@runtime_checkable
class ExplainsResources(Protocol):
    """A target that may fail to measure its replicas, and says why (optional capability)."""

    def unmeasured_reason(self) -> str:
        """Why the latest ``resources()`` measured nothing (no cluster configured, an API
        that does not answer); empty when it measured."""
        ...
