"""The deployment control plane: deployments resolved to revisions, rolled out to targets,
kept running by a reconciler that follows alias moves, automatic canaries judged from the
monitor's windows (see docs/deployments.md). Above ``monitor`` and ``serve``, below
``client``.

::

    serving = Serving.from_settings(store, artifacts, settings)
    await serving.start()
    serving.control.create("default", "churn", {"model": "churn@champion"}, actor="ada")

The names below are imported on first use: every replica starts as ``python -m
loopml.deploy.targets._replica``, which imports this package first, and must not pay for
the control plane (the registry, the stores, pandas: seconds) before its model server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.deploy.control import DeploymentControl as DeploymentControl
    from loopml.deploy.reconciler import Reconciler as Reconciler
    from loopml.deploy.serving import Serving as Serving

_LAZY = {
    "DeploymentControl": "loopml.deploy.control",
    "Reconciler": "loopml.deploy.reconciler",
    "Serving": "loopml.deploy.serving",
}

__all__ = ["DeploymentControl", "Reconciler", "Serving"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loopml.deploy' has no attribute {name!r}")
