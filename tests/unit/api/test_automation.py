"""Schedules and triggers through the SDK and raw HTTP against the in-process app: CRUD,
hostile input, the webhook's secret, and a trigger on rows appended through the real API."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from loopml.client import Client
from loopml.core.errors import (
    AlreadyExistsError,
    NotFoundError,
    PermissionDeniedError,
)
from loopml.pipelines.automation import AutomationEngine
from loopml.settings import Settings
from loopml.store.orm import TriggerRow
from tests.unit.api.conftest import MAX_BODY, MAX_UPLOAD

SPEC = """\
name: retrain
inputs:
  table: {type: string, default: churn}
steps:
  - {name: a, python: "m:f"}
"""


@pytest.fixture
def settings(tmp_path: Path, migrated_database_url: str) -> Settings:
    # The app's own engine ticks once at start-up and then sleeps: the tests tick their own.
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        server={
            "max_body_bytes": MAX_BODY,
            "max_upload_bytes": MAX_UPLOAD,
            "automation_interval_s": 3600,
        },
    )


@pytest.fixture
def client(http: TestClient) -> Client:
    sdk = Client(http=http)
    sdk.pipelines.apply(SPEC)
    return sdk


def engine(http: TestClient) -> AutomationEngine:
    return AutomationEngine(http.app.state.running.context.store)  # type: ignore[attr-defined]


def trigger_runs(client: Client, name: str) -> list[str]:
    return [r.id for r in client.pipelines.runs().items if r.actor == f"trigger:{name}"]


def test_schedule_crud(client: Client) -> None:
    made = client.schedules.create(
        "nightly",
        pipeline="retrain",
        cron="0 3 * * *",
        timezone="Europe/Paris",
        inputs={"table": "churn"},
        concurrency="queue",
    )
    assert (made.cron, made.timezone, made.concurrency, made.enabled) == (
        "0 3 * * *",
        "Europe/Paris",
        "queue",
        True,
    )
    assert made.next_fire_at is not None
    assert made.last_run_id is None
    assert [s.name for s in client.schedules.list()] == ["nightly"]
    paused = client.schedules.pause("nightly")
    assert not paused.enabled
    changed = client.schedules.update("nightly", cron="*/5 * * * *", enabled=True)
    assert (changed.cron, changed.enabled) == ("*/5 * * * *", True)
    assert client.schedules.get("nightly").cron == "*/5 * * * *"
    with pytest.raises(AlreadyExistsError):
        client.schedules.create("nightly", pipeline="retrain", cron="0 3 * * *")
    client.schedules.delete("nightly")
    with pytest.raises(NotFoundError):
        client.schedules.get("nightly")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "$(touch /tmp/x) * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"concurrency": "parallel"}, "concurrency"),
        ({"inputs": {"nope": 1}}, "inputs"),
        ({"name": "Bad Name"}, "name"),
    ],
)
def test_bad_schedules_are_422_naming_the_field(
    http: TestClient, client: Client, body: dict[str, object], field: str
) -> None:
    sent = {"name": "s1", "pipeline": "retrain", "cron": "0 3 * * *", **body}
    answer = http.post("/api/v1/projects/default/schedules", json=sent)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert client.schedules.list() == []


def test_unknown_pipeline_is_404(client: Client) -> None:
    with pytest.raises(NotFoundError, match="pipeline 'ghost'"):
        client.schedules.create("s1", pipeline="ghost", cron="0 3 * * *")
    with pytest.raises(NotFoundError, match="pipeline 'ghost'"):
        client.triggers.create("t1", pipeline="ghost", on="gate.failed")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"on": "table.deleted"}, "on"),
        ({"on": "table.appended", "where": {"model": "churn"}}, "where.model"),
        ({"on": "gate.failed", "where": {"table": "churn"}}, "where.table"),
        ({"on": "webhook", "where": {"model": "churn"}}, "where.model"),
        ({"on": "gate.failed", "min_rows": 10}, "min_rows"),
        ({"on": "table.appended", "min_rows": 0}, "min_rows"),
    ],
)
def test_bad_triggers_are_422(
    http: TestClient, client: Client, body: dict[str, object], field: str
) -> None:
    answer = http.post(
        "/api/v1/projects/default/triggers", json={"name": "t1", "pipeline": "retrain", **body}
    )
    assert answer.status_code == 422, answer.text
    assert field.split(".")[0] in answer.text
    assert client.triggers.list() == []


def test_webhook_fires_with_its_secret_only(http: TestClient, client: Client) -> None:
    hook = client.triggers.create("ci", pipeline="retrain", on="webhook")
    assert hook.secret is not None
    assert len(hook.secret) > 40
    assert client.triggers.get("ci").secret is None
    assert http.get("/api/v1/projects/default/triggers/ci").json()["secret"] is None
    with http.app.state.running.context.store.session() as session:  # type: ignore[attr-defined]
        stored = session.scalars(select(TriggerRow.secret_hash)).one()
    assert stored is not None
    assert hook.secret not in stored

    url = f"/api/v1/triggers/{hook.id}/fire"
    missing = http.post(url, json={"sha": "abc"})
    assert missing.status_code == 403
    assert "X-Loopml-Secret" in missing.json()["error"]["message"]
    wrong = http.post(url, headers={"X-Loopml-Secret": hook.secret[:-1] + "x"})
    assert wrong.status_code == 403
    assert "wrong secret" in wrong.json()["error"]["message"]
    with pytest.raises(PermissionDeniedError):
        client.triggers.fire(hook.id, "lmwh_guess")
    assert trigger_runs(client, "ci") == []
    assert (
        http.post(
            "/api/v1/triggers/" + "0" * 32 + "/fire", headers={"X-Loopml-Secret": hook.secret}
        ).status_code
        == 404
    )

    started = client.triggers.fire(hook.id, hook.secret, {"sha": "abc"})
    assert started["outcome"] == "started"
    assert "skipped" not in started
    assert trigger_runs(client, "ci") == [started["run_id"]]
    again = http.post(url, headers={"X-Loopml-Secret": hook.secret})
    assert again.status_code == 202
    assert "run_id" not in again.json()
    assert "still active" in again.json()["skipped"]
    history = client.triggers.history("ci")
    assert [f.outcome for f in history] == ["skipped", "started"]
    assert history[1].payload == {"sha": "abc"}


def test_a_trigger_on_appended_rows_starts_a_run_once_min_rows_accumulate(
    http: TestClient, client: Client
) -> None:
    client.tables.append_records("default", "churn", [{"x": 1}] * 8)  # history
    client.triggers.create(
        "on-rows",
        pipeline="retrain",
        on="table.appended",
        where={"table": "churn"},
        min_rows=5,
    )
    engine(http).tick()
    assert trigger_runs(client, "on-rows") == []
    client.tables.append_records("default", "churn", [{"x": 2}] * 3)
    client.tables.append_records("default", "other", [{"y": 2}] * 30)
    engine(http).tick()
    assert trigger_runs(client, "on-rows") == []
    assert client.triggers.get("on-rows").rows_pending == 3
    client.tables.append_records("default", "churn", [{"x": 3}] * 2)
    engine(http).tick()
    [run_id] = trigger_runs(client, "on-rows")
    [firing] = client.triggers.history("on-rows")
    assert firing.run_id == run_id
    assert firing.payload is not None
    assert firing.payload["rows"] == 2
    assert client.triggers.get("on-rows").rows_pending == 0
    assert client.pipelines.get_run(run_id).actor == "trigger:on-rows"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_webhook_checks_the_secret_before_the_body_and_refuses_non_finite_numbers(
    http: TestClient, client: Client, constant: str
) -> None:
    hook = client.triggers.create("ci", pipeline="retrain", on="webhook")
    assert hook.secret is not None
    url = f"/api/v1/triggers/{hook.id}/fire"
    body = '{"sha": ' + constant + "}"
    json_type = {"content-type": "application/json"}
    no_secret = http.post(url, content=body, headers=json_type)
    assert no_secret.status_code == 403, no_secret.text
    wrong = http.post(url, content=body, headers={**json_type, "X-Loopml-Secret": "lmwh_x"})
    assert wrong.status_code == 403, wrong.text
    right = http.post(url, content=body, headers={**json_type, "X-Loopml-Secret": hook.secret})
    assert right.status_code == 422, right.text
    assert constant.lstrip("-") in right.json()["error"]["message"]
    assert client.triggers.history("ci") == []
    assert trigger_runs(client, "ci") == []
