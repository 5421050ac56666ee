"""``loopml train --on ray`` against a real Ray cluster (``ray_cluster``): the defaults and the
search's trials run as Ray tasks on it, each recorded as a child run with the node it ran
on, and the winner is packaged as ONNX and registered as locally; a place other than
``local`` or ``ray``, and a cluster out of reach, are refused with the reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.core.errors import ConfigurationError, ServiceUnavailableError, ValidationError
from loopml.core.run_search import RunSearch
from loopml.train.budget import PHASES
from tests.conftest import free_port
from tests.ray_cluster import RayCluster

from .conftest import Platform

TRAIN = ("train", "--dataset", "cancer_snap", "--target", "y", "--task", "classification")


def _tasks_run(cluster: RayCluster, name: str) -> int:
    """How many of the cluster's Ray worker processes ran a task of function ``name`` (Ray
    writes ``:task_name:NAME`` into the process's log when it starts one)."""
    return sum(
        f":task_name:{name}" in log.read_text(errors="replace")
        for log in cluster.folder.glob("session_*/logs/worker-*.out")
    )


@pytest.fixture
def cancer(platform: Platform, tmp_path: Path) -> None:
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 3, 7, 30]]
    frame.columns = ["f0", "f1", "f2", "f3", "f4", "y"]
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    if platform.cli("datasets", "show", "cancer_snap").exit_code == 0:
        return
    assert platform.cli("ingest", str(tmp_path / "cancer.csv"), "--table", "cancer").exit_code == 0
    made = platform.cli(
        "datasets", "create", "cancer_snap", "--from", "cancer", "--split", "0.25",
        "--stratify", "y",
    )  # fmt: skip
    assert made.exit_code == 0, made.output


@pytest.mark.ray
def test_train_on_ray_runs_the_trials_on_the_cluster(
    platform: Platform, cancer: None, ray_cluster: RayCluster
) -> None:
    import ray

    trained = platform.cli(
        *TRAIN, "--budget", "20", "--register", "cancer_on_ray", "--json",
        "--on", "ray", "--ray-address", ray_cluster.address,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    outcome = json.loads(trained.stdout)
    assert outcome["model_format"] == "onnx"  # packaged with its parity check, as locally
    assert outcome["version"] == 1
    budget = outcome["budget"]
    # The whole call's wall time is not bounded here: under load its ensemble alone took
    # 7.9 s (22.2 s against 20 x 1.1 in one CI run). The run's own accounting is (its
    # phases make up its wall time), and the budget is judged from the trials' records below.
    phases = sum(budget.get(phase, 0.0) for phase in PHASES)
    assert phases == pytest.approx(budget["wall"], abs=0.02), json.dumps(budget)
    nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    with platform.client() as client:
        run = client.runs.get(outcome["run_id"])
        found = client.runs.search(
            RunSearch(experiment="cancer_snap", parent_run_id=outcome["run_id"], limit=1000)
        )
    children = [r for r in found.items if r.parent_run_id == outcome["run_id"]]
    assert outcome["trials"] == len(children) >= 3
    params = run.params or {}
    assert params["on"] == "ray"
    assert params["concurrent_trials"] == str(int(ray.cluster_resources()["CPU"]))
    # Every trial ran on a node of the cluster (a trial of this process names none), but
    # an ensemble, which is blended here from the trials' models.
    trials = [c for c in children if (c.tags or {}).get("loopml.automl.source") != "ensemble"]
    assert {(c.tags or {}).get("loopml.automl.node") for c in trials} <= nodes
    # No trial began after the budget ran out: at most one per concurrent slot (those in
    # flight then) ended past it, by the trials' own records (seconds into the search when
    # the node ended it: the driver hears of trials later, and on a machine loaded six
    # times over it recorded 129 of them between 20.0 and 28.5 s, all ended in time).
    with platform.client() as client:
        recorded = [client.runs.get(c.id).metrics or {} for c in trials]
    # (Over HTTP a trial's metrics were dropped at its creation: this read found none.)
    ended = sorted(float(m["elapsed_s"]) for m in recorded)
    late = [e for e in ended if e > 20]
    assert len(late) <= int(params["concurrent_trials"]), (ended, json.dumps(budget))
    assert _tasks_run(ray_cluster, "_part") >= 1
    assert _tasks_run(ray_cluster, "_default") >= 1


def test_on_must_be_local_or_ray(platform: Platform, cancer: None) -> None:
    refused = platform.cli(*TRAIN, "--budget", "5", "--on", "foo")
    assert isinstance(refused.exception, ValidationError)  # printed as one line by main()
    assert "on is local or ray, got 'foo'" in str(refused.exception)
    # Batch scoring says the same, before it reads or uploads anything.
    scored = platform.cli(
        "predict", "--input", "cancer", "--model", "m@prod", "-o", "out", "--on", "foo"
    )
    assert isinstance(scored.exception, ValidationError)
    assert str(scored.exception) == "--on is local or ray, got 'foo'"


def test_a_cluster_out_of_reach_is_named(platform: Platform, cancer: None) -> None:
    address = f"127.0.0.1:{free_port()}"
    refused = platform.cli(*TRAIN, "--budget", "5", "--on", "ray", "--ray-address", address)
    assert isinstance(refused.exception, ServiceUnavailableError)
    assert f"cannot reach the Ray cluster at {address}" in str(refused.exception)


def test_ray_not_installed_is_named(
    platform: Platform, cancer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is missing
    refused = platform.cli(*TRAIN, "--budget", "5", "--on", "ray")
    assert isinstance(refused.exception, ConfigurationError)
    assert "pip install 'loopml[ray]'" in str(refused.exception)
