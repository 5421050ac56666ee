"""MLflow calls that unchanged client code makes beyond the basics (issue 35): resuming a
run, runs found by name, the registry's search grammar, renames, stages, experiment tags,
logged-model metrics; in-process, as MLflow's client sends them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from loopml.faces.context import AppContext
from loopml.store import experiments
from loopml.store.orm import DeploymentRow
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
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
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


def _gate_passed(http: TestClient, model: str, version: int) -> None:
    base = f"/api/v1/projects/default/models/{model}/versions/{version}"
    report = {
        "eval_hash": "ab" * 16,
        "task": "classification",
        "primary_metric": "accuracy",
        "metrics": {"accuracy": 0.9},
        "rows": 100,
    }
    assert http.post(f"{base}/evaluations", json=report).status_code == 201
    assert http.post(f"{base}/gate", json={}).json()["passed"] is True


def test_stages_are_aliases_and_production_goes_through_the_gate(http: TestClient) -> None:
    _registered(http, ("churn", "churn", "churn"))

    def move(version: str, stage: str, status: int = 200, archive: bool = False) -> Any:
        body = {"name": "churn", "version": version, "stage": stage}
        body["archive_existing_versions"] = archive  # type: ignore[assignment]
        return _post(http, "model-versions/transition-stage", body, status)

    def latest(*stages: str) -> list[tuple[str, str]]:
        found = _post(
            http, "registered-models/get-latest-versions", {"name": "churn", "stages": stages}
        )
        return [(v["version"], v["current_stage"]) for v in found["model_versions"]]

    assert latest() == [("3", "None")]
    assert move("1", "staging")["model_version"]["current_stage"] == "Staging"
    assert latest("Staging", "None") == [("3", "None"), ("1", "Staging")]
    refused = move("1", "Production", 409)
    assert refused["error_code"] == "RESOURCE_CONFLICT"
    assert "gate has not judged it" in refused["message"]
    assert _get(http, "model-versions/get", name="churn", version="1")["model_version"][
        "aliases"
    ] == ["staging"]
    _gate_passed(http, "churn", 1)
    promoted = move("1", "Production")["model_version"]
    assert (promoted["current_stage"], promoted["aliases"]) == ("Production", ["champion"])
    _gate_passed(http, "churn", 2)
    move("2", "Production", archive=True)
    assert latest() == [("3", "None"), ("2", "Production"), ("1", "Archived")]
    _post(http, "registered-models/create", {"name": "empty"})
    got = _get(http, "registered-models/get", name="churn")["registered_model"]
    searched = _get(http, "registered-models/search", max_results=10)["registered_models"]
    assert [m["name"] for m in searched] == ["churn", "empty"]
    assert searched[1]["latest_versions"] == []
    for shown in (got, searched[0]):
        listed = shown["latest_versions"]
        assert [(v["version"], v["current_stage"]) for v in listed] == latest()
        for v in listed:  # each as model-versions/get shows it, source included
            one = _get(http, "model-versions/get", name="churn", version=v["version"])
            assert v == one["model_version"]
    assert move("1", "None")["model_version"]["current_stage"] == "None"
    assert move("1", "Released", 400)["error_code"] == "INVALID_PARAMETER_VALUE"
    events = http.get("/api/v1/events", params={"type": "model.alias.*", "limit": 100})
    assert [e["payload"]["alias"] for e in events.json()["items"]] == [
        "staging",
        "champion",
        "staging",
        "champion",
        "archived",
        "archived",
    ]


def test_a_registered_model_is_renamed_unless_a_deployment_names_it(http: TestClient) -> None:
    _registered(http, ("churn", "fraud"))
    renamed = _post(http, "registered-models/rename", {"name": "churn", "new_name": "churn2"})
    assert renamed["registered_model"]["name"] == "churn2"
    version = _get(http, "model-versions/get", name="churn2", version="1")["model_version"]
    assert version["name"] == "churn2"
    missing = _get(http, "registered-models/get", 404, name="churn")
    assert missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    taken = _post(http, "registered-models/rename", {"name": "churn2", "new_name": "fraud"}, 400)
    assert taken["error_code"] == "RESOURCE_ALREADY_EXISTS"
    bad = _post(http, "registered-models/rename", {"name": "churn2", "new_name": "A B"}, 400)
    assert bad["error_code"] == "INVALID_PARAMETER_VALUE"
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    with ctx.store.session() as session:  # a deployment serving fraud, by its name
        session.add(
            DeploymentRow(
                project_id=experiments.project_id(session, "default"),
                name="fraud-api",
                spec={"model": "churn2@champion", "canary": {"model": "fraud/1", "percent": 5}},
                status="READY",
                traffic={"1": 100},
                primary_revision=1,
                actor="test",
            )
        )
    for name in ("fraud", "churn2"):
        body = {"name": name, "new_name": f"{name}-x"}
        served = _post(http, "registered-models/rename", body, 409)
        assert served["error_code"] == "RESOURCE_CONFLICT"
        assert "deployment(s) fraud-api" in served["message"]


def test_experiments_take_spaces_tags_and_mlflow_s_filter(http: TestClient) -> None:
    spaced = _post(http, "experiments/create", {"name": "churn model"})["experiment_id"]
    other = _post(
        http, "experiments/create", {"name": "Churn-eu", "tags": [{"key": "team", "value": "ops"}]}
    )["experiment_id"]
    _post(
        http,
        "experiments/set-experiment-tag",
        {"experiment_id": spaced, "key": "team", "value": "risk"},
    )
    _post(
        http,
        "experiments/set-experiment-tag",
        {"experiment_id": spaced, "key": "tmp", "value": "x"},
    )
    _post(http, "experiments/delete-experiment-tag", {"experiment_id": spaced, "key": "tmp"})
    got = _get(http, "experiments/get", experiment_id=spaced)["experiment"]
    assert (got["name"], got["tags"]) == ("churn model", [{"key": "team", "value": "risk"}])
    assert _get(http, "experiments/get", experiment_id=other)["experiment"]["tags"] == [
        {"key": "team", "value": "ops"}
    ]

    def names(text: str, **extra: Any) -> list[str]:
        found = _post(http, "experiments/search", {"filter": text, **extra})["experiments"]
        return [e["name"] for e in found]

    assert names("name LIKE 'c%'") == ["churn model"]
    assert names("name ILIKE 'c%'") == ["Churn-eu", "churn model"]
    assert names("name != 'churn model' and name ILIKE 'c%'") == ["Churn-eu"]
    assert names("tags.team = 'risk'") == ["churn model"]
    assert names("tag.`team` LIKE '%s'") == ["Churn-eu"]
    assert names("creation_time > 0 and name ILIKE 'C%'", order_by=["name DESC"]) == [
        "churn model",
        "Churn-eu",
    ]
    page = _post(http, "experiments/search", {"filter": "name ILIKE 'c%'", "max_results": 1})
    rest = _post(
        http,
        "experiments/search",
        {"filter": "name ILIKE 'c%'", "max_results": 1, "page_token": page["next_page_token"]},
    )
    assert [e["name"] for e in rest["experiments"]] == ["churn model"]
    refused = _post(http, "experiments/search", {"filter": "name > 'a'"}, 400)
    assert refused["error_code"] == "INVALID_PARAMETER_VALUE"
    events = http.get("/api/v1/events", params={"type": "experiment.tag.*"}).json()["items"]
    assert [e["type"] for e in events] == [
        "experiment.tag.set",
        "experiment.tag.set",
        "experiment.tag.set",
        "experiment.tag.removed",
    ]


def test_metrics_logged_for_a_logged_model_are_its_metrics(http: TestClient) -> None:
    exp = _post(http, "experiments/create", {"name": "lm"})["experiment_id"]
    run_id = _post(http, "runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    body = {"experiment_id": exp, "name": "clf", "source_run_id": run_id}
    model_id = _post(http, "logged-models", body)["model"]["info"]["model_id"]
    point = {"run_id": run_id, "key": "acc", "value": 0.5, "timestamp": 7, "step": 0}
    _post(http, "runs/log-metric", {**point, "model_id": model_id})
    _post(http, "runs/log-metric", {**point, "model_id": model_id})  # a retry: no second point
    metrics = [
        {**point, "value": "NaN", "step": 1, "model_id": model_id},
        {**point, "key": "loss", "value": 0.25},
    ]
    _post(http, "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    got = _get(http, f"logged-models/{model_id}")["model"]["data"]["metrics"]
    assert [(m["key"], m["value"], m["step"], m["run_id"]) for m in got] == [
        ("acc", 0.5, 0, run_id),
        ("acc", "NaN", 1, run_id),
    ]
    run = _get(http, "runs/get", run_id=run_id)["run"]["data"]["metrics"]
    assert sorted(m["key"] for m in run) == ["acc", "loss"]
    missing = {**point, "model_id": "f" * 32}
    assert _post(http, "runs/log-metric", missing, 404)["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_like_patterns_are_plain_text_but_for_percent_and_underscore(http: TestClient) -> None:
    exp = _post(http, "experiments/create", {"name": "pat"})["experiment_id"]
    for name in ("a*b", "a\\b", "a[b]", "a%b"):
        _post(http, "runs/create", {"experiment_id": exp, "run_name": name})

    def names(pattern: str, op: str = "LIKE") -> list[str]:
        text = f"attributes.run_name {op} '{pattern}'"
        found = _post(http, "runs/search", {"experiment_ids": [exp], "filter": text})
        return sorted(r["info"]["run_name"] for r in found.get("runs", []))

    assert names("a*%") == ["a*b"]
    assert names("a\\%") == ["a\\b"]
    assert names("%\\") == []
    assert names("%\\", "ILIKE") == []
    assert names("a[%") == ["a[b]"]
    assert names("A_B", "ILIKE") == ["a%b", "a*b", "a\\b"]


def test_a_version_is_copied_by_its_models_uri(http: TestClient) -> None:
    """``copy_model_version`` sends ``source=models:/<name>/<version>``: the same package,
    verified again, as the next version of the other model (MLflow's client creates it)."""
    run_id = _registered(http, ("churn",))
    _post(http, "registered-models/create", {"name": "copy"})
    body = {"name": "copy", "source": "models:/churn/1", "run_id": run_id}
    copied = _post(http, "model-versions/create", body)["model_version"]
    assert (copied["version"], copied["status"], copied["run_id"]) == ("1", "READY", run_id)
    missing = {"name": "copy", "source": "models:/churn/9", "run_id": run_id}
    assert _post(http, "model-versions/create", missing, 404)["error_code"] == (
        "RESOURCE_DOES_NOT_EXIST"
    )


def test_mlflow_3_paths_loopml_does_not_serve_answer_in_mlflow_s_shape(http: TestClient) -> None:
    """MLflow 3 sends traces, datasets, workspaces and MCP servers to ``/api/3.0/mlflow``: an
    error its client reads (``ENDPOINT_NOT_FOUND``), not loopml's own 404 body."""
    for path in (
        "/api/3.0/mlflow/traces/search",
        "/ajax-api/3.0/mlflow/workspaces",
        "/mlflow/projects/default/api/3.0/mlflow/mcp-servers/search",
    ):
        answer = http.post(path, json={})
        assert answer.status_code == 404, path
        assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND", answer.text
