"""Deploy targets: where a deployment's replicas run (local processes, Kubernetes).

Every target implements ``base.DeployTarget``. Which ones a server offers is read from the
settings through one table (``TARGETS``: a name, whether the settings enable it, and how to
build it), so callers never branch on a target's kind; a deployment picks one by name
(``spec.target``), and an unknown or disabled name is refused with the list of enabled ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loopml.core.errors import ConfigurationError

if TYPE_CHECKING:
    from loopml.deploy.targets.base import DeployTarget
    from loopml.deploy.targets.local import LocalTargetConfig
    from loopml.settings import Settings


@dataclass(frozen=True)
class TargetKind:
    """One kind of deploy target: whether ``settings`` enable it, and how to build it."""

    name: str
    enabled: Callable[[Settings], bool]
    build: Callable[[Settings, Path], DeployTarget]


def local_config(settings: Settings) -> LocalTargetConfig:
    """The local target's configuration from the ``local`` and ``autoscale`` sections.

    Replicas do not log their predictions (no ``log_url``): the platform's gateway logs
    every answer it gives, so a killed replica loses no answered row.
    """
    from loopml.deploy.targets._autoscale import AutoscalePolicy
    from loopml.deploy.targets.local import LocalTargetConfig

    fields = settings.local.model_dump()
    fields["server_args"] = tuple(fields["server_args"])
    return LocalTargetConfig(**fields, autoscale=AutoscalePolicy(**settings.autoscale.model_dump()))


def _local(settings: Settings, root: Path) -> DeployTarget:
    from loopml.deploy.targets.local import LocalDeployTarget

    return LocalDeployTarget(root, local_config(settings))


def _kubernetes(settings: Settings, root: Path) -> DeployTarget:
    from loopml.deploy.targets.kubernetes import KubernetesTarget

    k8s = settings.kubernetes
    if not k8s.platform_url:
        raise ConfigurationError(
            "kubernetes.enabled needs kubernetes.platform_url (LOOPML_KUBERNETES_PLATFORM_URL)"
            ": the address pods reach this platform at"
        )
    return KubernetesTarget(
        image=k8s.image,
        platform_url=k8s.platform_url,
        namespace=k8s.namespace,
        kserve=k8s.kserve,
        gateway_parent=k8s.gateway_parent,
        kubeconfig=k8s.kubeconfig,
        context=k8s.context,
        in_cluster=k8s.in_cluster,
        token_secret=k8s.token_secret,
    )


TARGETS: tuple[TargetKind, ...] = (
    TargetKind("local", lambda _: True, _local),
    TargetKind("kubernetes", lambda s: s.kubernetes.enabled, _kubernetes),
)


def open_targets(settings: Settings, root: Path) -> dict[str, DeployTarget]:
    """The targets ``settings`` enable, by name, built (none started)."""
    return {kind.name: kind.build(settings, root) for kind in TARGETS if kind.enabled(settings)}
