"""A deployment's replica bounds from what a caller asks: ``replicas`` (both bounds), or
``min_replicas`` and/or ``max_replicas`` (the other kept)."""

from __future__ import annotations

from loopml.core.deployments import Deployment
from loopml.core.errors import ValidationError
from loopml.deploy.control import DeploymentControl


def scale(
    control: DeploymentControl,
    project: str,
    name: str,
    *,
    replicas: int | None,
    min_replicas: int | None,
    max_replicas: int | None,
    actor: str,
) -> Deployment:
    """Set a deployment's replica bounds; ``replicas`` sets both (at least 1 as the upper).

    Raises:
        ValidationError: ``replicas`` given with ``min_replicas`` or ``max_replicas``.
    """
    current = control.get(project, name)
    if replicas is not None and (min_replicas, max_replicas) != (None, None):
        raise ValidationError(
            "give either replicas, or min_replicas and/or max_replicas, not both",
            details={"field": "replicas"},
        )
    if replicas is not None:
        low, high = replicas, max(replicas, 1)
    else:
        low = current.spec.min_replicas if min_replicas is None else min_replicas
        high = current.spec.max_replicas if max_replicas is None else max_replicas
    return control.scale(project, name, min_replicas=low, max_replicas=high, actor=actor)
