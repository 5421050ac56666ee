"""The replicas the deploy targets run, measured now: every one (the portal's overview, the
monitor's resource windows) or one deployment's (its API route and its portal page)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from loopml.core.resources import ReplicaSample
from loopml.deploy.targets.base import ExplainsResources, ReportsResources

if TYPE_CHECKING:
    from loopml.deploy.control import DeploymentControl


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
