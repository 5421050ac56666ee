"""``train_custom`` on a codeset, end to end on this machine: a real API server (for the
code's MLflow REST calls) and a real worker; the codeset's MLproject runs in a virtualenv
made from its requirements.txt (satisfied by what is installed here, so no network), and its
metrics land on a loopml run that records the codeset version. It runs in a project other than
``default``: the code's MLflow calls reach that project's tracking URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopml.client import Client
from loopml.pipelines import service
from loopml.settings import Settings
from loopml.wiring import open_artifact_store, open_metadata_store
from tests.unit.cli.conftest import serve
from tests.unit.storage.test_codetree import write

from .conftest import FAST, running_worker, step_of, wait_run

# A codeset step builds an environment and packages a model in subprocesses: on a loaded
# machine FAST's 3 s lease can lapse while the worker's heartbeat waits for the CPU.
LONG_LEASE = FAST.model_copy(update={"lease_s": 30.0, "heartbeat_s": 1.0})

PROJECT = "churn"

TRAIN = """\
import json, os, sys, time, urllib.request

import numpy  # from requirements.txt: satisfied by the environment loopml runs in

alpha = float(sys.argv[sys.argv.index("--alpha") + 1])
uri = os.environ["MLFLOW_TRACKING_URI"]
assert uri.endswith("/mlflow/projects/churn"), uri
base = uri + "/api/2.0/mlflow/runs/"
run_id = os.environ["MLFLOW_RUN_ID"]
assert sys.prefix != sys.base_prefix, "not in a virtualenv"


def call(path, body):
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request).read()


call("log-parameter", {"run_id": run_id, "key": "alpha", "value": str(alpha)})
stamp = int(time.time() * 1000)
square = float(numpy.square(alpha))
call("log-metric", {"run_id": run_id, "key": "alpha_sq", "value": square, "timestamp": stamp})
print("trained in", sys.prefix)
"""
MLPROJECT = """\
name: squarer
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
    command: "python train.py --alpha {alpha}"
"""
SPEC = """\
name: fit-code
inputs:
  code: codeset
steps:
  - name: train
    uses: train_custom
    with: {codeset: "${{ inputs.code }}", params: {alpha: 0.8}}
"""


def _why(store: Any, artifacts: Any, run_id: str, step: str) -> str:
    """A failed step's error and the end of its log, whole: what a CI log needs to say why."""
    attempt, log = service.read_log(store, artifacts, PROJECT, run_id, step)
    return f"{attempt.error}\n--- the step's log, its end:\n{log[-4000:].decode(errors='replace')}"


def test_a_codeset_trains_in_its_environment_and_logs_through_mlflow_rest(
    tmp_path: Path,
) -> None:
    home = tmp_path / "platform"
    home.mkdir()
    code = tmp_path / "code"
    write(code, {"train.py": TRAIN, "MLproject": MLPROJECT, "requirements.txt": "numpy\n"})
    with serve(home) as platform:
        settings = Settings(
            home=home,
            database={"url": f"sqlite:///{home / 'loopml.db'}"},
            artifacts={"root": str(home / "artifacts")},
            client={"url": platform.url},
        )
        with Client(platform.url) as client:
            client.projects.create(PROJECT)
            client.codesets.register("squarer", code, project=PROJECT)
            client.pipelines.apply(SPEC, project=PROJECT)
        store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
        run = service.start_run(store, PROJECT, "fit-code", {"code": "squarer"}, actor="t")
        assert run.inputs == {"code": "squarer@1"}
        with running_worker(store, artifacts, settings, LONG_LEASE):
            done = wait_run(store, run.id, timeout_s=240, project=PROJECT)
        train = step_of(done, "train")
        assert done.status == "SUCCEEDED", _why(store, artifacts, done.id, "train")
        assert train.outputs is not None
        assert train.outputs["metrics"] == {"alpha_sq": pytest.approx(0.64)}
        with Client(platform.url) as client:
            trained = client.runs.get(train.outputs["run"], project=PROJECT)
        assert trained.status == "FINISHED"
        assert trained.params == {"alpha": "0.8"}
        assert trained.tags is not None
        assert trained.tags["loopml.codeset"] == "squarer@1"
        assert [(i.kind, i.ref) for i in trained.inputs or []] == [("codeset", "squarer@1")]

        # A new version (same requirements): a cache miss, run in the same environment.
        write(code, {"train.py": TRAIN.replace("numpy.square(alpha)", "alpha ** 3")})
        with Client(platform.url) as client:
            assert client.codesets.register("squarer", code, project=PROJECT).version.version == 2
        again = service.start_run(store, PROJECT, "fit-code", {"code": "squarer"}, actor="t")
        with running_worker(store, artifacts, settings, LONG_LEASE):
            second = step_of(wait_run(store, again.id, timeout_s=240, project=PROJECT), "train")
        assert second.status == "SUCCEEDED", _why(store, artifacts, again.id, "train")
        assert second.outputs is not None
        assert second.outputs["metrics"] == {"alpha_sq": pytest.approx(0.512)}
        envs = [p for p in (home / "codeset-envs").iterdir() if p.is_dir()]
        assert len(envs) == 1
        assert (envs[0] / "ready").exists()


LOG_MLFLOW_MODEL = """\
import json, os, pickle, urllib.request

import pandas as pd
from sklearn.linear_model import LogisticRegression

# What mlflow.sklearn.log_model (MLflow 2) leaves in a run: an MLmodel folder with a pickle
# and the input example, uploaded through MLflow's artifact API.
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow-artifacts/artifacts/runs/"
base += os.environ["MLFLOW_RUN_ID"] + "/model/"
frame = pd.DataFrame({"a": [float(i) for i in range(40)], "b": [float(i % 7) for i in range(40)]})
model = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
mlmodel = (
    "flavors:\\n"
    "  FLAVOR:\\n"
    "    pickled_model: model.pkl\\n"
    "    serialization_format: cloudpickle\\n"
    "saved_input_example_info:\\n"
    "  artifact_path: input_example.json\\n"
    "  type: dataframe\\n"
)
example = {"columns": ["a", "b"], "data": frame.head(5).values.tolist()}
for name, body in (
    ("MLmodel", mlmodel.encode()),
    ("model.pkl", pickle.dumps(model)),
    ("input_example.json", json.dumps(example).encode()),
):
    request = urllib.request.Request(base + name, body, method="PUT")
    urllib.request.urlopen(request).read()
"""
MLPROJECT_PLAIN = """\
entry_points:
  main:
    command: "python train.py"
"""
SPEC_REGISTER = """\
name: fit-register
inputs:
  code: codeset
steps:
  - name: train
    uses: train_custom
    with: {codeset: "${{ inputs.code }}"}
  - name: register
    uses: register
    with: {run: "${{ steps.train.outputs.run }}", model: logged}
"""


def test_an_mlflow_model_the_code_logged_is_packaged_in_its_environment_and_registered(
    tmp_path: Path,
) -> None:
    home = tmp_path / "platform"
    home.mkdir()
    code = tmp_path / "code"
    train = LOG_MLFLOW_MODEL.replace("FLAVOR", "sklearn")
    write(code, {"train.py": train, "MLproject": MLPROJECT_PLAIN})
    with serve(home) as platform:
        settings = Settings(
            home=home,
            database={"url": f"sqlite:///{home / 'loopml.db'}"},
            artifacts={"root": str(home / "artifacts")},
            client={"url": platform.url},
        )
        with Client(platform.url) as client:
            client.codesets.register("logger", code)
            client.pipelines.apply(SPEC_REGISTER)
        store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
        run = service.start_run(store, "default", "fit-register", {"code": "logger"}, actor="t")
        with running_worker(store, artifacts, settings, LONG_LEASE):
            done = wait_run(store, run.id, timeout_s=240)
        train_step = step_of(done, "train")
        assert done.status == "SUCCEEDED", (train_step.error, step_of(done, "register").error)
        assert step_of(done, "register").outputs == {"model": "logged/1"}
        assert train_step.outputs is not None
        with Client(platform.url) as client:
            models = client.runs.list_models(train_step.outputs["run"], project="default")
            version = client.models.get_version("logged", 1, project="default")
        assert [(m.path, m.format) for m in models] == [("loopml-model", "onnx")]
        assert version.status == "READY"

        # A model loopml cannot package fails the step as the code's own error.
        write(code, {"train.py": LOG_MLFLOW_MODEL.replace("FLAVOR", "python_function")})
        with Client(platform.url) as client:
            client.codesets.register("logger", code)
        again = service.start_run(store, "default", "fit-register", {"code": "logger"}, actor="t")
        with running_worker(store, artifacts, settings, LONG_LEASE):
            refused = step_of(wait_run(store, again.id, timeout_s=240), "train")
        assert refused.status == "FAILED"
        assert refused.error is not None
        assert refused.error.origin == "user_code"
        assert "could not be packaged" in refused.error.message
        assert "no sklearn flavour" in refused.error.message
