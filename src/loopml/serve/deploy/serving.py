"""Online serving as the platform runs it: control plane, local target, gateway, reconciler.

::

    serving = Serving.open(store, artifacts, home / "deployments")
    app.router.routes.extend(serving.gateway.routes())
    await serving.start()      # in the app's lifespan
    ...
    await serving.close()      # stops every replica
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from loopml.serve.deploy.control import DeploymentControl
from loopml.serve.deploy.reconciler import Reconciler
from loopml.serve.gateway import Gateway, GatewayConfig
from loopml.serve.targets.base import DeployTarget
from loopml.serve.targets.local import LocalDeployTarget, LocalTargetConfig
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore


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
