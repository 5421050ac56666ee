"""The MLflow API in-process, through raw HTTP as MLflow's client sends it: answers, error
shapes and statuses, limits, soft deletion, artifact paths, and both mounts."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

API = "/api/2.0/mlflow"


def _post(http: TestClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    answer = http.post(f"{API}/{path}", json=body)
    assert answer.status_code == status, answer.text
    return answer.json()


def _run(http: TestClient, experiment: str = "exp") -> str:
    exp = _post(http, "experiments/create", {"name": experiment})["experiment_id"]
    created = _post(http, "runs/create", {"experiment_id": exp, "run_name": "r1"})
    run_id: str = created["run"]["info"]["run_id"]
    return run_id


def test_errors_have_mlflow_codes_and_statuses(http: TestClient) -> None:
    missing = http.get(f"{API}/experiments/get-by-name", params={"experiment_name": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    _post(http, "experiments/create", {"name": "dup"})
    again = _post(http, "experiments/create", {"name": "dup"}, status=400)
    assert again["error_code"] == "RESOURCE_ALREADY_EXISTS"
    bad = _post(http, "experiments/create", {"name": "/Users/me/exp"}, status=400)
    assert bad["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "expected 1 to 200 letters" in bad["message"]
    unparsable = _post(http, "runs/log-batch", {"run_id": "x", "metrics": "no"}, status=400)
    assert unparsable["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = http.post(f"{API}/traces/search", json={})
    assert unknown.status_code == 404
    assert unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    stages = _post(http, "model-versions/transition-stage", {"name": "m"}, status=400)
    assert stages["error_code"] == "INVALID_PARAMETER_VALUE"


def test_ajax_mount_serves_the_same_handlers(http: TestClient) -> None:
    run_id = _run(http)
    got = http.get("/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id})
    assert got.status_code == 200
    assert got.json()["run"]["info"]["run_name"] == "r1"


def test_default_experiment_zero_is_created_on_first_use(http: TestClient) -> None:
    created = _post(http, "runs/create", {"experiment_id": "0"})
    info = created["run"]["info"]
    got = http.get(f"{API}/experiments/get", params={"experiment_id": info["experiment_id"]})
    assert got.json()["experiment"]["name"] == "Default"
    assert info["artifact_uri"] == f"mlflow-artifacts:/runs/{info['run_id']}"


def test_log_batch_follows_mlflow_limits_and_is_all_or_nothing(http: TestClient) -> None:
    run_id = _run(http)
    metrics = [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(1000)]
    _post(http, "runs/log-batch", {"run_id": run_id, "metrics": metrics})
    too_many = [*metrics, {"key": "m", "value": 1.0, "timestamp": 1, "step": 2000}]
    refused = _post(http, "runs/log-batch", {"run_id": run_id, "metrics": too_many}, 400)
    assert refused["error_code"] == "INVALID_PARAMETER_VALUE"
    mixed = {
        "run_id": run_id,
        "metrics": metrics[:950],
        "params": [{"key": f"p{i}", "value": "v"} for i in range(51)],
    }
    assert "in total" in _post(http, "runs/log-batch", mixed, 400)["message"]
    changed = {"run_id": run_id, "params": [{"key": "a", "value": "1"}]}
    _post(http, "runs/log-batch", changed)
    changed["params"] = [{"key": "a", "value": "2"}]
    changed["tags"] = [{"key": "t", "value": "x"}]
    assert _post(http, "runs/log-batch", changed, 409)["error_code"] == "RESOURCE_CONFLICT"
    run = http.get(f"{API}/runs/get", params={"run_id": run_id}).json()["run"]
    assert run["data"]["tags"] == [{"key": "mlflow.runName", "value": "r1"}]
    history = http.get(
        f"{API}/metrics/get-history", params={"run_id": run_id, "metric_key": "m"}
    ).json()
    assert len(history["metrics"]) == 1000
    assert "next_page_token" not in history


def test_nan_travels_as_text_and_infinity_is_refused(http: TestClient) -> None:
    run_id = _run(http)
    _post(http, "runs/log-metric", {"run_id": run_id, "key": "loss", "value": "NaN"})
    got = http.get(f"{API}/runs/get", params={"run_id": run_id}).json()
    assert got["run"]["data"]["metrics"][0]["value"] == "NaN"
    refused = _post(
        http, "runs/log-metric", {"run_id": run_id, "key": "l", "value": "Infinity"}, 400
    )
    assert "infinity is refused" in refused["message"]


def test_soft_delete_and_restore(http: TestClient) -> None:
    run_id = _run(http)
    exp = http.get(f"{API}/runs/get", params={"run_id": run_id}).json()["run"]["info"]
    search = {"experiment_ids": [exp["experiment_id"]]}
    _post(http, "runs/delete", {"run_id": run_id})
    assert _post(http, "runs/search", search).get("runs", []) == []
    deleted = _post(http, "runs/search", {**search, "run_view_type": "DELETED_ONLY"})
    assert deleted["runs"][0]["info"]["lifecycle_stage"] == "deleted"
    _post(http, "runs/restore", {"run_id": run_id})
    assert len(_post(http, "runs/search", search)["runs"]) == 1
    _post(http, "experiments/delete", {"experiment_id": exp["experiment_id"]})
    assert _post(http, "experiments/search", {})["experiments"] == []
    _post(http, "experiments/restore", {"experiment_id": exp["experiment_id"]})
    assert _post(http, "experiments/search", {"filter": "name = 'exp'"})["experiments"]


def test_search_translates_filters_orders_and_pages(http: TestClient) -> None:
    exp = _post(http, "experiments/create", {"name": "s"})["experiment_id"]
    ids = []
    for i in range(5):
        run = _post(http, "runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
        _post(http, "runs/log-metric", {"run_id": run, "key": "acc", "value": i / 10})
        _post(http, "runs/log-parameter", {"run_id": run, "key": "even", "value": str(i % 2)})
        ids.append(run)
    body = {
        "experiment_ids": [exp],
        "filter": "metrics.acc >= 0.1 and params.even = '0'",
        "order_by": ["metrics.acc DESC"],
        "max_results": 1,
    }
    first = _post(http, "runs/search", body)
    second = _post(http, "runs/search", {**body, "page_token": first["next_page_token"]})
    assert [first["runs"][0]["info"]["run_id"], second["runs"][0]["info"]["run_id"]] == [
        ids[4],
        ids[2],
    ]
    assert "next_page_token" not in second

    def found(text: str) -> list[str]:
        answer = _post(http, "runs/search", {"experiment_ids": [exp], "filter": text})
        return sorted(r["info"]["run_id"] for r in answer.get("runs", []))

    assert found("params.even LIKE '0%'") == sorted(ids[0::2])
    assert found("params.even LIKE '_'") == sorted(ids)
    assert found("params.even ILIKE '1'") == sorted(ids[1::2])
    refused = _post(http, "runs/search", {**body, "filter": "metrics.acc LIKE '0%'"}, 400)
    assert "LIKE is not supported on metrics" in refused["message"]


def test_runs_are_searched_by_their_start_and_end_in_milliseconds(http: TestClient) -> None:
    """``attributes.start_time`` / ``end_time`` against the times MLflow's client reads back
    (whole milliseconds): a run's own start matches ``=``, ``<=`` and ``>=`` it."""
    exp = _post(http, "experiments/create", {"name": "times"})["experiment_id"]
    first = _post(http, "runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    time.sleep(0.01)
    second = _post(http, "runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    _post(http, "runs/update", {"run_id": first, "status": "FINISHED"})
    start = http.get(f"{API}/runs/get", params={"run_id": second}).json()["run"]["info"]
    at = int(start["start_time"])

    def found(text: str) -> list[str]:
        answer = _post(http, "runs/search", {"experiment_ids": [exp], "filter": text})
        return sorted(r["info"]["run_id"] for r in answer.get("runs", []))

    assert found(f"attributes.start_time = {at}") == [second]
    assert found(f"attributes.start_time >= {at}") == [second]
    assert found(f"attributes.start_time < {at}") == [first]
    assert found(f"attributes.start_time <= {at}") == sorted([first, second])
    assert found(f"attributes.start_time != {at}") == [first]
    # The latest time taken: its millisecond still ends in the year 9999.
    assert found("attributes.start_time < 253402300799998") == sorted([first, second])
    assert found("attributes.start_time = 253402300799998") == []
    # The running run has no end: no comparison of end_time matches it.
    assert found("attributes.end_time > 0") == [first]
    assert found(f"attributes.end_time < {at + 10**9} and attributes.start_time < {at}") == [first]


@pytest.mark.parametrize(
    "path",
    [
        "runs/{run}/../../secrets",
        "runs/{run}/%2e%2e/x",
        "runs/{run}/a//b",
        "elsewhere/{run}/x",
        "runs/{run}/.loopml-tmp",
    ],
)
def test_artifact_paths_are_validated(http: TestClient, path: str) -> None:
    run_id = _run(http)
    url = "/api/2.0/mlflow-artifacts/artifacts/" + path.format(run=run_id)
    answer = http.put(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert answer.status_code in (400, 404), answer.text
    assert answer.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")


def test_artifacts_put_list_get_delete(http: TestClient) -> None:
    run_id = _run(http)
    base = f"/api/2.0/mlflow-artifacts/artifacts/runs/{run_id}"
    for name in ("a.txt", "d/b.txt", "d/e/c.txt"):
        put = http.put(f"{base}/{name}", content=name.encode(), headers={"Content-Type": "x/y"})
        assert put.status_code == 200, put.text
    listed = http.get(
        "/api/2.0/mlflow-artifacts/artifacts", params={"path": f"runs/{run_id}/d"}
    ).json()
    assert listed["files"] == [
        {"path": "b.txt", "is_dir": False, "file_size": 7},
        {"path": "e", "is_dir": True},
    ]
    assert http.get(f"{base}/d/e/c.txt").content == b"d/e/c.txt"
    assert http.delete(f"{base}/d").status_code == 200
    assert http.get(f"{base}/d/b.txt").json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert http.delete(f"{base}/d").status_code == 404
