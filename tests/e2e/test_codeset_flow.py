"""FuseML's flow end to end against a real ``loopml up``: a git repository holding an
MLproject whose ``train.py`` is plain ``mlflow`` code is registered as a codeset, the shipped
``train-code`` pipeline is assigned to it and runs (train, package the MLflow model, register,
evaluate, gate, deploy); a commit that changes a hyperparameter is registered and runs it
again; the deployment answers a V2 inference and ``loopml pipelines runs`` lists both runs.

``mlflow-skinny`` reaches the codeset's environment the way every package the worker has
does: that environment sees the worker's packages (``--system-site-packages`` and a ``.pth``
naming the worker's site-packages; the entry point also inherits the worker's
``PYTHONPATH``). The test installs ``mlflow-skinny`` (the pinned 3.x) into an overlay: a
virtualenv that sees loopml's own environment through a ``.pth``, as a codeset's does, so pip
adds only what loopml's environment lacks (mlflow and a few of its dependencies, no package
that loopml already has at another version; checked below); the server gets that overlay on
its ``PYTHONPATH``, as if ``mlflow-skinny`` were installed where the worker runs. The
codeset itself has no ``requirements.txt``. It is made once and kept beside the MLflow client
environments (``mlflow_cache_folder``); where PyPI cannot be reached the test skips.

It runs in the ``default`` project: the MLflow API serves only that one for now.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import random
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml.client import Client
from tests.conftest import missing_service
from tests.waiting import eventually

from .conftest import RunningServer, mlflow_cache_folder, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.mlflow, pytest.mark.timeout(600)]

MLFLOW = "3.17.2"
MLPROJECT = """\
name: points
entry_points:
  main:
    parameters:
      C: {type: float, default: 0.001}
    command: "python train.py -C {C}"
"""
TRAIN = """\
import argparse

import mlflow
import mlflow.sklearn
import pandas as pd
from sklearn.linear_model import LogisticRegression

parser = argparse.ArgumentParser()
parser.add_argument("-C", type=float, required=True)
args = parser.parse_args()

frame = pd.read_csv("data.csv")
features, label = frame[["a", "b"]], frame["label"]
with mlflow.start_run():
    mlflow.log_param("C", args.C)
    model = LogisticRegression(C=args.C)
    model.fit(features, label)
    mlflow.log_metric("train_accuracy", model.score(features, label))
    # Naming the requirements spares MLflow inferring them (it reloads the model in a
    # subprocess that imports whatever is installed: a minute on a busy machine).
    mlflow.sklearn.log_model(
        model, name="model", input_example=features.head(5), pip_requirements=["scikit-learn"]
    )
"""


def _overlay(cache: Path) -> Path:
    """A folder holding ``mlflow-skinny`` and only what loopml's environment lacks of its
    dependencies (made once, kept)."""
    folder = cache / f"overlay-{MLFLOW}"
    python = folder / "bin" / "python"
    marker = folder / "installed"
    wanted = f"mlflow-skinny=={MLFLOW}"
    if not (marker.exists() and marker.read_text().startswith(wanted)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "venv",
                "--clear",
                "--system-site-packages",
                "--without-pip",
                str(folder),
            ],
            check=True,
        )
        purelib = _purelib(python)
        parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (purelib / "_loopml_parent.pth").write_text("\n".join(parents) + "\n")
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wanted],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            missing_service(f"PyPI (pip install {wanted}): {done.stderr[-500:]}")
        marker.write_text(f"{wanted}\n")
    purelib = _purelib(python)
    mine = {p.name.split("-")[0].lower() for p in purelib.glob("*.dist-info")}
    theirs = {
        p.name.split("-")[0].lower()
        for parent in site.getsitepackages()
        for p in Path(parent).glob("*.dist-info")
    }
    # On the server's PYTHONPATH, a package loopml has would shadow loopml's own.
    assert not mine & theirs, f"the overlay shadows loopml's {sorted(mine & theirs)}"
    return purelib


def _purelib(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(subprocess.run([str(python), "-c", code], check=True, capture_output=True,
                               text=True).stdout.strip())  # fmt: skip


@pytest.fixture(scope="module")
def mlflow_packages(request: pytest.FixtureRequest) -> Path:
    cache = mlflow_cache_folder(request.config)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"overlay-{MLFLOW}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _overlay(cache)


def _points() -> str:
    """160 points on a 10 x 10 grid, labelled by a diagonal: a heavily regularised logistic
    regression answers one class, a lightly regularised one gets nearly all right."""
    rng = random.Random(0)
    rows = []
    for _ in range(160):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append(f"{a / 10},{b / 10},{int(a + b > 9)}\n")
    return "a,b,label\n" + "".join(rows)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def _ok(server: RunningServer, *args: str) -> str:
    done = server.cli(*args, timeout=120)
    assert done.returncode == 0, f"loopml {' '.join(args)}: {done.stderr}"
    return done.stdout


def _runs(client: Client, count: int, timeout_s: float = 240) -> list[str]:
    """The ids of the pipeline's runs, oldest first, once ``count`` of them have ended."""

    def ended() -> list[str] | None:
        items = client.pipelines.runs(pipeline="train-code").items
        if len(items) >= count and all(r.status.finished for r in items):
            return [r.id for r in reversed(items)]
        return None

    def state() -> list[Any]:
        return [
            (r.id, r.status, r.error) for r in client.pipelines.runs(pipeline="train-code").items
        ]

    return eventually(ended, timeout_s, f"{count} ended runs", interval_s=0.5, describe=state)


def _succeeded(client: Client, run_id: str) -> dict[str, str]:
    """The run's step statuses, once it is known to have succeeded with every step."""
    found = client.pipelines.get_run(run_id)
    steps = {s.name: str(s.status) for s in found.steps or []}
    errors = {s.name: s.error.message for s in found.steps or [] if s.error}
    if found.status != "SUCCEEDED" and "train" in errors:
        print(client.pipelines.logs(run_id, "train"))  # the code's own output
    assert found.status == "SUCCEEDED", (found.error, errors)
    return steps


def test_a_codeset_trains_registers_and_deploys_on_every_commit(
    mlflow_packages: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "points-code"
    repo.mkdir()
    (repo / "MLproject").write_text(MLPROJECT)
    (repo / "train.py").write_text(TRAIN)
    (repo / "data.csv").write_text(_points())
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "C=0.001")
    first_commit = _git(repo, "rev-parse", "HEAD")

    home = tmp_path / "home"
    home.mkdir()
    pythonpath = os.pathsep.join(
        p for p in (os.environ.get("PYTHONPATH", ""), str(mlflow_packages)) if p
    )
    with running_server(home, {"PYTHONPATH": pythonpath}) as server, Client(server.url) as client:
        _ok(server, "ingest", str(repo / "data.csv"), "--table", "points")
        _ok(server, "datasets", "create", "points_ds", "--from", "points", "--split", "0.25",
            "--stratify", "label", "--seed", "0")  # fmt: skip
        registered = _ok(server, "codesets", "register", "points", str(repo))
        assert f"commit {first_commit[:12]}" in registered
        assigned = _ok(
            server, "pipelines", "assign", "train-code", "--codeset", "points",
            "-i", "model=points", "-i", "deployment=points",
            "-i", "dataset=points_ds", "-i", "target=label",
        )  # fmt: skip
        assert "applied the shipped pipeline train-code" in assigned
        assert "queued run" in assigned
        assert "on points@1" in assigned
        (first,) = _runs(client, 1)
        steps = _succeeded(client, first)
        assert steps["deploy"] == "SUCCEEDED", steps

        text = (repo / "MLproject").read_text().replace("default: 0.001", "default: 100")
        (repo / "MLproject").write_text(text)
        _git(repo, "commit", "-q", "-am", "C=100")
        second_commit = _git(repo, "rev-parse", "HEAD")
        assert "registered as version 2" in _ok(server, "codesets", "register", "points", str(repo))
        first_again, second = _runs(client, 2)
        assert first_again == first
        steps = _succeeded(client, second)
        assert steps["deploy"] == "SUCCEEDED", steps

        # Lineage: model version -> run -> codeset version -> commit.
        version = client.models.get_version("points", 2)
        trained = client.runs.get(version.run_id)
        assert trained.params == {"C": "100.0"}
        assert [(i.kind, i.ref, (i.details or {}).get("commit")) for i in trained.inputs or []] == [
            ("codeset", "points@2", second_commit)
        ]
        shown = json.loads(_ok(server, "deployments", "show", "points", "--json"))
        assert shown["traffic"] == {"2": 100}
        answer = httpx.post(
            f"{server.url}/v2/models/points/infer",
            json={
                "inputs": [
                    {"name": "a", "shape": [2], "datatype": "FP64", "data": [0.9, 0.1]},
                    {"name": "b", "shape": [2], "datatype": "FP64", "data": [0.8, 0.2]},
                ]
            },
            trust_env=False,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert outputs["predict"] == [1, 0]

        listed = _ok(server, "pipelines", "runs", "train-code", "-o", "csv")
        rows = list(csv.DictReader(io.StringIO(listed)))
        assert [(r["run"], r["status"]) for r in rows] == [
            (second, "SUCCEEDED"),
            (first, "SUCCEEDED"),
        ]
        assert "code=points@2" in rows[0]["inputs"].split(", ")
        assert "code=points@1" in rows[1]["inputs"].split(", ")
