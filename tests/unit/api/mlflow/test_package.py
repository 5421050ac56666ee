"""An MLflow-format sklearn model in a run becomes a loopml package, on the caller's side
(``package-mlflow``; registering the MLflow copy itself is packaged on the server, see
``test_convert_sandbox``), and the server points MLflow's client back at it
(get-download-uri) for ``pyfunc.load_model("models:/name@alias")``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from loopml.client import Client
from loopml.core.errors import ValidationError
from loopml.packaging import package_model
from loopml.sdk.mlflow import package_mlflow_model

MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0
saved_input_example_info:
  artifact_path: input_example.json
  type: dataframe
  pandas_orient: split
"""


def _mlflow_run(client: Client, http: TestClient, mlmodel: str = MLMODEL) -> str:
    """A run holding what mlflow.sklearn.log_model writes (MLflow 2's layout)."""
    exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": "sk"}).json()
    run = http.post("/api/2.0/mlflow/runs/create", json={"experiment_id": exp["experiment_id"]})
    run_id: str = run.json()["run"]["info"]["run_id"]
    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    model = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    example = {"columns": ["a", "b"], "data": frame.head(5).to_numpy().tolist()}
    client.runs.upload_artifact(run_id, "model/MLmodel", mlmodel.encode())
    client.runs.upload_artifact(run_id, "model/model.pkl", pickle.dumps(model))
    client.runs.upload_artifact(run_id, "model/input_example.json", json.dumps(example).encode())
    return run_id


def test_the_package_made_client_side_registers(client: Client, http: TestClient) -> None:
    run_id = _mlflow_run(client, http)
    body = {"name": "sk", "source": f"runs:/{run_id}/model", "run_id": run_id}
    http.post("/api/2.0/mlflow/registered-models/create", json={"name": "sk"})
    logged = package_mlflow_model(client, run_id)
    assert logged.path == "loopml-model"
    assert logged.format == "onnx"
    registered = http.post(
        "/api/2.0/mlflow/model-versions/create",
        json={**body, "source": f"runs:/{run_id}/loopml-model"},
    )
    assert registered.status_code == 200, registered.text
    assert registered.json()["model_version"]["status"] == "READY"
    # MLflow's client loads models:/sk@<alias> from the MLflow model it was packaged from.
    uri = http.get(
        "/api/2.0/mlflow/model-versions/get-download-uri", params={"name": "sk", "version": "1"}
    )
    assert uri.status_code == 200, uri.text
    assert uri.json() == {"artifact_uri": f"mlflow-artifacts:/runs/{run_id}/model"}
    # Once that model is gone, the answer says so instead of pointing at nothing.
    http.delete(f"/api/2.0/mlflow-artifacts/artifacts/runs/{run_id}/model/MLmodel")
    gone = http.get(
        "/api/2.0/mlflow/model-versions/get-download-uri", params={"name": "sk", "version": "1"}
    )
    assert gone.status_code == 400
    assert "holds no MLmodel file any more" in gone.json()["message"]


def test_a_version_without_an_mlflow_model_has_no_download_uri(
    client: Client, http: TestClient, tmp_path: Path
) -> None:
    """A package loopml made itself (as AutoML does) has no MLmodel for MLflow's client to
    load: get-download-uri answers why, in MLflow's shape, and what to use instead."""
    run_id = _mlflow_run(client, http)
    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    model = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    package = package_model(model, tmp_path / "package", sample=frame)
    for file in sorted(package.path.iterdir()):
        client.runs.upload_artifact(run_id, f"automl/{file.name}", file)
    client.runs.record_model(
        run_id,
        path="automl",
        flavor=package.manifest.flavor,
        format=package.manifest.primary,
        manifest_sha256=package.manifest_sha256,
        signature=package.manifest.signature.model_dump(mode="json"),
    )
    http.post("/api/2.0/mlflow/registered-models/create", json={"name": "auto"})
    body = {"name": "auto", "source": f"runs:/{run_id}/automl", "run_id": run_id}
    created = http.post("/api/2.0/mlflow/model-versions/create", json=body)
    assert created.status_code == 200, created.text
    answer = http.get(
        "/api/2.0/mlflow/model-versions/get-download-uri", params={"name": "auto", "version": "1"}
    )
    assert answer.status_code == 400
    error = answer.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "was not packaged from an MLflow-format model" in error["message"]
    assert "loopml deploy auto/1" in error["message"]
    assert "loopml.sdk.fetch --model auto --version 1" in error["message"]


def test_only_the_sklearn_flavour_is_read(client: Client, http: TestClient) -> None:
    run_id = _mlflow_run(client, http, "flavors:\n  python_function: {}\n")
    with pytest.raises(ValidationError, match="no sklearn flavour"):
        package_mlflow_model(client, run_id)
