"""Online serving as the platform runs it: control plane, local target, gateway, reconciler.

::

    serving = Serving.from_settings(store, artifacts, settings)
    app.router.routes.extend(serving.gateway.routes())
    await serving.start()      # in the app's lifespan
    ...
    await serving.close()      # stops every replica
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from loopml.deploy.control import DeploymentControl
from loopml.deploy.reconciler import Reconciler
from loopml.deploy.targets.base import DeployTarget
from loopml.deploy.targets.local import LocalDeployTarget, LocalTargetConfig
from loopml.serve.gateway.app import Gateway
from loopml.serve.gateway.config import GatewayConfig
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore

if TYPE_CHECKING:
    from loopml.settings import Settings


@dataclass
class Serving:
    """The pieces of online serving, built together and started and stopped together."""

    control: DeploymentControl
    local: LocalDeployTarget
    gateway: Gateway
    reconciler: Reconciler

    @classmethod
    def open(
        cls,
        store: MetadataStore,
        artifacts: ArtifactStore,
        root: Path,
        *,
        local: LocalTargetConfig | None = None,
        gateway: GatewayConfig | None = None,
        extra_targets: dict[str, DeployTarget] | None = None,
        reconcile_interval_s: float = 0.5,
    ) -> Serving:
        """Build (nothing starts yet) with the local target enabled, plus ``extra_targets``
        (such as ``kubernetes``)."""
        target = LocalDeployTarget(root, local)
        control = DeploymentControl(
            store, artifacts, {"local": target, **(extra_targets or {})}, root
        )
        return cls(
            control=control,
            local=target,
            gateway=Gateway(target, gateway),
            reconciler=Reconciler(control, store, interval_s=reconcile_interval_s),
        )

    @classmethod
    def from_settings(
        cls, store: MetadataStore, artifacts: ArtifactStore, settings: Settings
    ) -> Serving:
        """Build from the settings tree: the targets it enables (``deploy.targets.TARGETS``),
        the ``gateway``, ``deployments`` and ``canary`` sections; packages under
        ``<home>/deployments``. The reconciler also judges automatic canaries (when the
        monitor runs) and keeps the replicas' Prometheus list (``deployments.scrape_targets``)."""
        from loopml.deploy.targets import open_targets

        root = settings.home / "deployments"
        targets = open_targets(settings, root)
        local = targets.pop("local")
        assert isinstance(local, LocalDeployTarget)
        control = DeploymentControl(store, artifacts, {"local": local, **targets}, root)
        gateway = settings.gateway
        interval = settings.deployments.reconcile_interval_s
        tasks = _tasks(control, store, local, settings)
        return cls(
            control=control,
            local=local,
            gateway=Gateway(local, gateway),
            reconciler=Reconciler(control, store, interval_s=interval, tasks=tasks),
        )

    async def start(self) -> None:
        """Start the supervisor and the gateway's pool, then re-apply every deployment."""
        self.local.start()
        await self.gateway.start()
        await anyio.to_thread.run_sync(self.reconciler.start)

    async def close(self) -> None:
        """Stop following, close the gateway, stop every replica."""
        await anyio.to_thread.run_sync(self.reconciler.stop)
        await self.gateway.close()
        await anyio.to_thread.run_sync(self.local.close)


def _tasks(
    control: DeploymentControl,
    store: MetadataStore,
    local: LocalDeployTarget,
    settings: Settings,
) -> list[Callable[[], object]]:
    """What the reconciler does besides reconciling, as the settings ask."""
    from loopml.core.canary import CanaryPolicy
    from loopml.deploy.canary import CanaryDefaults, CanaryWatch
    from loopml.deploy.scrape import ScrapeTargets
    from loopml.monitor.compare import judged_size

    tasks: list[Callable[[], object]] = []
    if settings.monitor.enabled:
        canary = settings.canary
        policy = CanaryPolicy(**canary.model_dump(exclude={"auto", "interval_s"}))
        watch = CanaryWatch(
            control,
            store,
            CanaryDefaults(canary.auto, policy),
            window=judged_size(settings.monitor),
            interval_s=canary.interval_s,
        )
        tasks.append(watch.run_due)
    if settings.deployments.scrape_targets:
        path = settings.home / settings.deployments.scrape_targets
        tasks.append(ScrapeTargets(path, local.all_routes).write)
    return tasks
