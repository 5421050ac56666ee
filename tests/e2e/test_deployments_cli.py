"""`loopml deploy` and `loopml deployments` against a running `loopml up`, like a user: a
deployment on an alias, served through the gateway, following the alias, scaled, rolled
back, rendered for Kubernetes, deleted; no replica outlives the server, even one killed
with SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.unit.deploy.deploy_support import REPLICA_MODULE, instances
from tests.waiting import REQUEST_GUARD_S, eventually

from .conftest import RunningServer, log_cancer_model, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _replicas(server: RunningServer) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and REPLICA_MODULE in child.cmdline():
                found.append(child)
        except psutil.Error:  # gone, or a zombie not yet reaped (a replica scaled away)
            continue
    return found


def _show(server: RunningServer, name: str) -> dict[str, Any]:
    shown = server.cli("deployments", "show", name, "--json")
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def _wait(server: RunningServer, name: str, check: Any, timeout: float = 60) -> dict[str, Any]:
    return eventually(
        lambda: check(data := _show(server, name)) and data,
        timeout,
        f"deployment {name} to pass {check}",
        interval_s=0.5,
        describe=lambda: _show(server, name),
    )


def test_deploy_follow_scale_rollback_and_delete_from_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_server(home) as server:
        log_cancer_model(server, tmp_path / "pkg", versions=2)
        assert server.cli("models", "alias", "set", "cancer", "prod", "1").returncode == 0

        deployed = server.cli("deploy", "cancer@prod", "--name", "churn", "--replicas", "1")
        assert deployed.returncode == 0, deployed.stderr
        assert "ready" in deployed.stdout
        listed = server.cli("deployments", "list")
        assert "churn" in listed.stdout
        answer = httpx.post(
            f"{server.url}/deployments/churn/predict",
            json={"instances": instances(2)},
            trust_env=False,
            timeout=REQUEST_GUARD_S,
        )
        assert answer.status_code == 200
        assert answer.headers["x-loopml-model-version"] == "1"

        assert server.cli("models", "alias", "set", "cancer", "prod", "2").returncode == 0
        followed = _wait(
            server, "churn", lambda d: d["traffic"] == {"2": 100} and d["status"] == "ready"
        )
        assert [r["version"] for r in followed["revisions"]] == [1, 2]
        logs = server.cli("deployments", "logs", "churn", "-n", "50")
        assert "loopml.serve: cancer version 2 (onnx) for deployment churn" in logs.stdout

        scaled = server.cli("deployments", "scale", "churn", "2")
        assert scaled.returncode == 0, scaled.stderr
        _wait(server, "churn", lambda d: d["replicas_ready"] == 2 and d["status"] == "ready")
        rolled = server.cli("deployments", "rollback", "churn", "1")
        assert rolled.returncode == 0, rolled.stderr
        assert _show(server, "churn")["spec"]["model"] == "cancer/1"

        rendered = server.cli(
            "deploy",
            "cancer/2",
            "--name",
            "churn-k8s",
            "--target",
            "kubernetes",
            "--dry-run",
            "-o",
            "yaml",
        )
        assert rendered.returncode == 0, rendered.stderr
        assert "kind: Deployment" in rendered.stdout
        assert "churn-k8s" in rendered.stdout
        missing = server.cli("deployments", "show", "churn-k8s")
        assert missing.returncode == 1
        assert missing.stderr.startswith("error: deployment 'churn-k8s' not found")

        bad = server.cli("deploy", "cancer@@x", "--name", "x")
        assert bad.returncode == 1
        assert "Traceback" not in bad.stderr

        assert len(_replicas(server)) >= 1
        deleted = server.cli("deployments", "delete", "churn", "--yes")
        assert deleted.returncode == 0, deleted.stderr
        assert _replicas(server) == []
        server.cli("deploy", "cancer/1", "--name", "left", "--replicas", "1")
        [left] = _replicas(server)
        # Killed outright, the platform cannot stop its replicas: the kernel does
        # (PR_SET_PDEATHSIG), so none is left holding a port.
        server.process.kill()
        server.process.wait(10)
        left.wait(20)
