"""Against a real platform: ``alerts``, ``monitor`` and ``runs package-mlflow`` follow the
current project like every other command, and ``status`` shows the open alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml.cli._context import project_file
from loopml.store import alert_rules
from tests.tracking_rows import make_run

from .conftest import Platform, make_deployment

PROJECT = "churn"
HOME = "loopml-home"  # the folder tests/conftest.py gives each test as LOOPML_HOME


@pytest.fixture(scope="module")
def watched(platform: Platform) -> str:
    """Project ``churn``, its deployment ``churn-api`` with three alert rules (one firing,
    one pending, one ok), and a run whose ``model/MLmodel`` is not an MLflow model."""
    with platform.client() as client:
        client.projects.create(PROJECT)
        make_deployment(platform, PROJECT)
        for name in ("errors", "latency", "quiet"):
            client.monitoring.create_alert(
                name,
                deployment="churn-api",
                metric="error_rate",
                comparator=">",
                threshold=0.05,
                project=PROJECT,
            )
        run = make_run(platform.ctx.store, PROJECT)
        client.runs.upload_artifact(run.id, "model/MLmodel", b"not a model\n", project=PROJECT)
    now = datetime.now(UTC)
    with platform.ctx.store.session() as session:
        for name, state, ago in (("errors", "firing", 60), ("latency", "pending", 5)):
            since = now - timedelta(seconds=ago)
            alert_rules.set_state(session, PROJECT, name, state=state, since=since, value=0.2)
    return run.id


@pytest.mark.parametrize("how", ["loopml use", "LOOPML_PROJECT"])
def test_alerts_monitor_and_mlflow_follow_the_current_project(
    platform: Platform, watched: str, how: str, tmp_path: Path
) -> None:
    def names() -> list[str]:
        shown = platform.cli("alerts", "list", "-o", "json", env=env)
        assert shown.exit_code == 0, shown.output
        return [rule["name"] for rule in json.loads(shown.stdout)]

    env: dict[str, str] = {}
    assert names() == []  # the default project has none
    missing = platform.cli("monitor", "churn-api", "--json")
    assert "deployment 'churn-api' not found in project 'default'" in str(missing.exception)
    unknown = platform.cli("runs", "package-mlflow", watched)
    assert "not found in project 'default'" in str(unknown.exception)

    if how == "loopml use":
        assert platform.cli("use", PROJECT).exit_code == 0
        assert project_file(tmp_path / HOME).read_text().strip() == PROJECT
    else:
        env = {"LOOPML_PROJECT": PROJECT}
    assert names() == ["errors", "latency", "quiet"]
    view = platform.cli("monitor", "churn-api", "--json", env=env)
    assert view.exit_code == 0, view.output
    assert (json.loads(view.stdout)["project"], json.loads(view.stdout)["deployment"]) == (
        PROJECT,
        "churn-api",
    )
    # The run is found in the current project: what stops it now is its file.
    found = platform.cli("runs", "package-mlflow", watched, env=env)
    assert "model/MLmodel is not an MLflow model description" in str(found.exception)
    # -p still wins over the current project.
    assert platform.cli("alerts", "list", "-p", "default", "-o", "json", env=env).stdout == "[]\n"


def test_status_shows_the_open_alerts_newest_first(platform: Platform, watched: str) -> None:
    env = {"LOOPML_PROJECT": PROJECT}
    shown = platform.cli("status", env=env)
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "monitoring is not built" not in text
    assert f"project   {PROJECT} (current, from LOOPML_PROJECT)" in text
    assert "deployments (1)" in text
    assert "alerts (1 firing, 1 pending, of 3 rule(s))" in text
    table = text.split("alerts (", 1)[1]
    assert table.index("errors") < table.index("latency")  # firing before pending
    assert "quiet" not in table  # ok: not open
    assert "error_rate 0.2 > 0.05" in table
    assert max(len(line) for line in text.splitlines()) <= 80

    one = platform.cli("status", "--alerts", "1", env=env)
    assert "latency" not in one.stdout.split("alerts (", 1)[1]
    assert "(1 more: loopml alerts list)" in one.stdout

    none = platform.cli("status", "-p", "default")
    assert "alerts    no alert rules in this project" in none.stdout


def test_status_as_json_holds_what_its_tables_show(platform: Platform, watched: str) -> None:
    shown = platform.cli("status", "-o", "json", env={"LOOPML_PROJECT": PROJECT})
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["server"]["url"] == platform.url
    assert data["server"]["status"] == "ok"
    assert (data["project"], data["current"]) == (PROJECT, True)
    assert [d["name"] for d in data["deployments"]] == ["churn-api"]
    assert [(a["name"], a["state"]) for a in data["open_alerts"]] == [
        ("errors", "firing"),
        ("latency", "pending"),
    ]
    assert data["alert_rules"] == 3
    down = platform.cli("status", "-o", "json", env={"LOOPML_CLIENT_URL": "http://127.0.0.1:9"})
    assert down.exit_code == 1
    assert json.loads(down.stdout)["server"]["status"] == "down"
    wrong = platform.cli("status", "-o", "yaml")
    assert "--output 'yaml': expected table or json" in str(wrong.exception), wrong.output


def test_status_says_when_the_server_is_down(platform: Platform) -> None:
    shown = platform.cli("status", env={"LOOPML_CLIENT_URL": "http://127.0.0.1:9"})
    assert shown.exit_code == 1
    assert "server    http://127.0.0.1:9: down (cannot reach loopml" in shown.stdout
