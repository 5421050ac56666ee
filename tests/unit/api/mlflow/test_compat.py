"""MLflow calls that unchanged client code makes beyond the basics (issue 35): resuming a
run, runs found by name, the registry's search grammar, renames, stages, experiment tags,
logged-model metrics; in-process, as MLflow's client sends them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

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
