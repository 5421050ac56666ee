"""A replica starts as ``python -m loopml.deploy.targets._replica``: Python imports
``loopml.deploy`` and ``loopml.deploy.targets`` first, and neither may pull in the control
plane. When ``loopml.deploy`` imported it eagerly (the registry, the stores, pandas), every
replica spent 1.2 to 2 s more before its model server started, and a scale-from-zero wake
took 2.8 to 3.1 s instead of 1.6 s (bench/serving.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "sqlalchemy", "loopml.store", "loopml.registry", "loopml.deploy.control")


def test_the_replica_entry_point_imports_no_control_plane() -> None:
    probe = (
        "import json, sys\n"
        "import loopml.deploy.targets._replica\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


def test_the_control_plane_names_still_import_from_the_package() -> None:
    from loopml.deploy import DeploymentControl, Reconciler, Serving
    from loopml.deploy.control import DeploymentControl as Control

    assert DeploymentControl is Control
    assert Reconciler.__name__ == "Reconciler"
    assert Serving.__name__ == "Serving"
