"""MLflow calls that unchanged client code makes beyond the basics (issue 35): resuming a
run, runs found by name, the registry's search grammar, renames, stages, experiment tags,
logged-model metrics; in-process, as MLflow's client sends them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from loopml.api.context import AppContext
from tests.tracking_rows import log_model, make_run

API = "/api/2.0/mlflow"


def _post(http: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    answer = http.post(f"{API}/{path}", json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def _get(http: TestClient, path: str, status: int = 200, **params: Any) -> Any:
    answer = http.get(f"{API}/{path}", params=params)
    assert answer.status_code == status, answer.text
    return answer.json()


def test_a_finished_run_resumes_and_the_resume_is_an_event(http: TestClient) -> None:
    exp = _post(http, "experiments/create", {"name": "resume"})["experiment_id"]
    run_id = _post(http, "runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    _post(http, "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 1})
    resumed = _post(http, "runs/update", {"run_id": run_id, "status": "RUNNING"})
    assert resumed["run_info"]["status"] == "RUNNING"
    assert resumed["run_info"]["end_time"] is None
    again = _post(http, "runs/update", {"run_id": run_id, "status": "RUNNING"})
    assert again["run_info"]["status"] == "RUNNING"
    _post(http, "runs/update", {"run_id": run_id, "status": "KILLED"})
    events = http.get("/api/v1/events", params={"type": "run.resumed"}).json()["items"]
    assert [e["payload"]["from_status"] for e in events] == ["FINISHED"]
    _post(http, "runs/delete", {"run_id": run_id})
    deleted = _post(http, "runs/update", {"run_id": run_id, "status": "RUNNING"}, 409)
    assert deleted["error_code"] == "RESOURCE_CONFLICT"


def test_runs_are_found_by_name_as_attribute_and_as_tag(http: TestClient) -> None:
    exp = _post(http, "experiments/create", {"name": "named"})["experiment_id"]
    for name in ("r007", "R008", "other"):
        _post(http, "runs/create", {"experiment_id": exp, "run_name": name})
    renamed = _post(http, "runs/create", {"experiment_id": exp, "run_name": "old"})
    run_id = renamed["run"]["info"]["run_id"]
    _post(http, "runs/set-tag", {"run_id": run_id, "key": "mlflow.runName", "value": "r009"})

    def names(text: str) -> list[str]:
        found = _post(http, "runs/search", {"experiment_ids": [exp], "filter": text})
        return sorted(r["info"]["run_name"] for r in found.get("runs", []))

    assert names("tags.mlflow.runName = 'r007'") == ["r007"]
    assert names("tags.`mlflow.runName` = 'r009'") == ["r009"]
    assert names("attributes.run_name != 'other'") == ["R008", "r007", "r009"]
    assert names("attributes.run_name LIKE 'r%'") == ["r007", "r009"]  # case-sensitive
    assert names("run_name ILIKE 'r%'") == ["R008", "r007", "r009"]
    got = _get(http, "runs/get", run_id=run_id)["run"]["data"]["tags"]
    assert {"key": "mlflow.runName", "value": "r009"} in got


def _registered(http: TestClient, names: tuple[str, ...]) -> str:
    """Versions of ``names`` (in that order) registered from one run's package."""
    ctx: AppContext = http.app.state.ctx  # type: ignore[attr-defined]
    run = make_run(ctx.store)
    log_model(ctx.store, ctx.artifacts, run)
    for name in names:
        if (
            _get(http, "registered-models/search", filter=f"name = '{name}'")["registered_models"]
            == []
        ):
            _post(http, "registered-models/create", {"name": name})
        source = f"runs:/{run.id}/model"
        _post(http, "model-versions/create", {"name": name, "source": source, "run_id": run.id})
    return run.id


def test_registry_searches_take_mlflow_s_grammar(http: TestClient) -> None:
    run_id = _registered(http, ("churn", "fraud", "churn", "churn-eu"))
    _post(http, "registered-models/set-tag", {"name": "churn", "key": "team", "value": "risk"})
    _post(
        http, "model-versions/set-tag", {"name": "churn", "version": "2", "key": "ok", "value": "y"}
    )
    _post(
        http,
        "registered-models/set-tag",
        {"name": "fraud", "key": "mlflow.prompt.is_prompt", "value": "true"},
    )

    def models(text: str | None, **params: Any) -> list[str]:
        found = _get(http, "registered-models/search", filter=text, **params)
        return [m["name"] for m in found["registered_models"]]

    prompt = "tags.`mlflow.prompt.is_prompt` != 'true'"
    assert models(prompt) == ["churn", "churn-eu"]
    assert models(None) == ["churn", "churn-eu", "fraud"]
    assert models("name LIKE 'C%'") == []  # LIKE is case-sensitive, as in MLflow
    assert models("name ILIKE 'C%'") == ["churn", "churn-eu"]
    assert models("name LIKE '%-__'") == ["churn-eu"]
    assert models(f"tag.team = 'risk' AND {prompt}") == ["churn"]
    assert models("tags.team != 'ops'") == ["churn"]
    assert models(None, order_by=["name DESC"]) == ["fraud", "churn-eu", "churn"]
    first = _get(http, "registered-models/search", max_results=2)
    rest = _get(
        http, "registered-models/search", max_results=2, page_token=first["next_page_token"]
    )
    assert [m["name"] for m in rest["registered_models"]] == ["fraud"]
    assert rest["next_page_token"] is None
    refused = _get(http, "registered-models/search", 400, filter="run_id = 'x'")
    assert refused["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "invalid attribute key 'run_id'" in refused["message"]

    def versions(text: str) -> list[str]:
        found = _get(http, "model-versions/search", filter=text)["model_versions"]
        return [f"{v['name']}/{v['version']}" for v in found]

    assert versions("name = 'churn'") == ["churn/2", "churn/1"]
    assert versions(f"run_id = '{run_id}' and name != 'churn'") == ["churn-eu/1", "fraud/1"]
    assert versions(f"run_id IN ('{run_id}') and version_number > 1") == ["churn/2"]
    assert versions("tags.ok = 'y'") == ["churn/2"]
    assert versions(
        f"source_path = 'mlflow-artifacts:/runs/{run_id}/model' and name LIKE 'f%'"
    ) == ["fraud/1"]
    assert versions("source_path LIKE '%/other'") == []
    refused = _get(http, "model-versions/search", 400, filter="current_stage = 'None'")
    assert refused["error_code"] == "INVALID_PARAMETER_VALUE"
