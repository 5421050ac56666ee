"""``train_custom`` on a codeset, end to end on this machine: a real API server (for the
code's MLflow REST calls) and a real worker; the codeset's MLproject runs in a virtualenv
made from its requirements.txt (satisfied by what is installed here, so no network), and its
metrics land on a loopml run that records the codeset version."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.client import Client
from loopml.pipelines import service
from loopml.settings import Settings
from loopml.wiring import open_artifact_store, open_metadata_store
from tests.unit.cli.conftest import serve
from tests.unit.storage.test_codetree import write

from .conftest import FAST, running_worker, step_of, wait_run

TRAIN = """\
import json, os, sys, time, urllib.request

import numpy  # from requirements.txt: satisfied by the environment loopml runs in

alpha = float(sys.argv[sys.argv.index("--alpha") + 1])
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/"
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
            client.codesets.register("squarer", code)
            client.pipelines.apply(SPEC)
        store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
        run = service.start_run(store, "default", "fit-code", {"code": "squarer"}, actor="t")
        assert run.inputs == {"code": "squarer@1"}
        with running_worker(store, artifacts, settings, FAST):
            done = wait_run(store, run.id, timeout_s=240)
        train = step_of(done, "train")
        assert done.status == "SUCCEEDED", train.error
        assert train.outputs is not None
        assert train.outputs["metrics"] == {"alpha_sq": pytest.approx(0.64)}
        with Client(platform.url) as client:
            trained = client.runs.get(train.outputs["run"], project="default")
        assert trained.status == "FINISHED"
        assert trained.params == {"alpha": "0.8"}
        assert trained.tags is not None
        assert trained.tags["loopml.codeset"] == "squarer@1"
        assert [(i.kind, i.ref) for i in trained.inputs or []] == [("codeset", "squarer@1")]

        # A new version (same requirements): a cache miss, run in the same environment.
        write(code, {"train.py": TRAIN.replace("numpy.square(alpha)", "alpha ** 3")})
        with Client(platform.url) as client:
            assert client.codesets.register("squarer", code).version.version == 2
        again = service.start_run(store, "default", "fit-code", {"code": "squarer"}, actor="t")
        with running_worker(store, artifacts, settings, FAST):
            second = step_of(wait_run(store, again.id, timeout_s=240), "train")
        assert second.status == "SUCCEEDED", second.error
        assert second.outputs is not None
        assert second.outputs["metrics"] == {"alpha_sq": pytest.approx(0.512)}
        envs = [p for p in (home / "codeset-envs").iterdir() if p.is_dir()]
        assert len(envs) == 1
        assert (envs[0] / "ready").exists()
