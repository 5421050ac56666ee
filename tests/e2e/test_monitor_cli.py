"""`loopml monitor` and `loopml alerts` against a running `loopml up` whose monitor loop
watches a real deployment served through the gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.deploy.deploy_support import instances
from tests.waiting import REQUEST_GUARD_S, eventually

from .conftest import RunningServer, log_cancer_model, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
# The lag must exceed the prediction log's flush delay (1 s): rows landing behind the
# watermark are not read.
FAST = {"LOOPML_MONITOR_INTERVAL_S": "1", "LOOPML_MONITOR_LAG_S": "4"}


def _view(server: RunningServer) -> dict[str, Any]:
    shown = server.cli("monitor", "churn", "--json")
    assert shown.returncode == 0, shown.stderr
    data: dict[str, Any] = json.loads(shown.stdout)
    return data


def _usage(view: dict[str, Any]) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """What the served model's windows counted, and the errors by (model, status)."""
    windows = view["windows"]
    # The served model's windows (a round past the hour adds a window of replica figures
    # with no request: the newest is not always the one with the traffic).
    served = [w["summary"]["usage"] for w in windows if w["model"]]
    used = {k: sum(u[k] for u in served) for k in ("answered", "rows")} if served else {}
    # A request the gateway refused before any replica saw it counts under model "".
    errors = {
        (w["model"], status): n
        for w in windows
        for status, n in w["summary"]["usage"]["errors_by_status"].items()
    }
    return used, errors


def _counted(server: RunningServer) -> Any:
    """``(used, errors, view)`` once 5 requests were answered and 1 refused, else None."""
    view = _view(server)
    used, errors = _usage(view)
    return (used, errors, view) if used.get("answered") == 5 and sum(errors.values()) == 1 else None


def test_the_monitor_loop_and_its_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_server(home, FAST) as server:
        log_cancer_model(server, tmp_path / "pkg")
        deployed = server.cli("deploy", "cancer/1", "--name", "churn", "--replicas", "1")
        assert deployed.returncode == 0, deployed.stderr
        url = f"{server.url}/deployments/churn/predict"
        for _ in range(5):
            answer = httpx.post(
                url, json={"instances": instances(3)}, trust_env=False, timeout=REQUEST_GUARD_S
            )
            assert answer.status_code == 200, answer.text
        bad = httpx.post(
            url, json={"instances": [{"nope": 1.0}]}, trust_env=False, timeout=REQUEST_GUARD_S
        )
        assert bad.status_code == 422

        used, errors, view = eventually(
            lambda: _counted(server),
            60,
            "5 answered requests and 1 error in the monitor's windows",
            interval_s=0.5,
            describe=lambda: _usage(_view(server)),
        )
        assert used["rows"] == 15, used
        assert list(errors) in ([("cancer", "422")], [("", "422")]), errors
        [reference] = view["references"].values()
        assert reference["status"] == "off"  # logged without a dataset: drift is off
        shown = server.cli("monitor", "churn")
        assert shown.returncode == 0, shown.stderr
        assert "drift off" in shown.stdout
        assert "consumed no dataset" in shown.stdout
        assert "alerts: none firing" in shown.stdout

        made = server.cli(
            "alerts", "create", "busy", "-d", "churn", "--metric", "requests",
            "--threshold", "3", "--severity", "critical",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        shown = eventually(
            lambda: "FIRING" in (out := server.cli("monitor", "churn")).stdout and out,
            60,
            "the busy alert FIRING in loopml monitor",
            interval_s=0.5,
            describe=lambda: server.cli("monitor", "churn").stdout,
        )
        assert "busy" in shown.stdout
        listed = server.cli("alerts", "list")
        assert "firing" in listed.stdout
        assert "requests > 3" in listed.stdout
        assert server.cli("alerts", "silence", "busy", "--for", "600").returncode == 0
        refused = server.cli(
            "alerts", "create", "meta", "-d", "churn", "--metric", "error_rate",
            "--threshold", "0.1", "--webhook", "http://169.254.169.254/latest/meta-data",
        )  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: webhook '169.254.169.254' resolves to")
        assert server.cli("alerts", "delete", "busy").returncode == 0
        assert "busy" not in server.cli("alerts", "list").stdout
        scraped = httpx.get(f"{server.url}/metrics", trust_env=False, timeout=REQUEST_GUARD_S).text
        assert "loopml_monitor_alert_state" in scraped
