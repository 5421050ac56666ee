"""The deployment control plane: deployments resolved to revisions, rolled out to targets,
kept running by a reconciler that follows alias moves (see docs/deployments.md).

::

    serving = Serving.from_settings(store, artifacts, settings)
    await serving.start()
    serving.control.create("default", "churn", {"model": "churn@champion"}, actor="ada")
"""

from loopml.deploy.control import DeploymentControl as DeploymentControl
from loopml.deploy.reconciler import Reconciler as Reconciler
from loopml.deploy.serving import Serving as Serving

__all__ = ["DeploymentControl", "Reconciler", "Serving"]
