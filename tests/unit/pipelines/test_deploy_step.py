"""The ``deploy`` built-in against a real platform (the API under uvicorn, its embedded
worker running the step, real replica processes behind the gateway).

``direct`` creates a deployment following ``cancer@champion`` and returns once it serves.
A ``canary`` of a version whose replica answers 500 to every request of more than one row
(its ONNX graph reshapes a column to one row: it loads and warms up, then fails at
inference) fails its error budget under traffic: the step fails once, with the counts, the
canary is removed and the champion alias stays where it was.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopml.core.deployments import DeploymentStatus
from loopml.core.gate import EvaluationReport
from loopml.core.pipelines import PipelineRun, RunStatus, StepStatus
from loopml.pipelines import service
from loopml.registry import gate, resolve, set_alias
from tests.unit.deploy.deploy_support import (
    PackageFiles,
    Platform,
    fit,
    home_settings,
    package_files,
    register_files,
    register_model,
    replica_processes,
    wait_until,
)

from .conftest import step_of, wait_run

pytestmark = pytest.mark.timeout(300)
PROJECT = "default"
EVAL = "e1" * 32

SPEC = """\
name: ship
inputs:
  model: {type: model}
  deployment: {type: string}
  strategy: {type: string, default: direct}
outputs:
  revision: ${{ steps.deploy.outputs.revision }}
steps:
  - name: deploy
    uses: deploy
    with:
      model: ${{ inputs.model }}
      deployment: ${{ inputs.deployment }}
      strategy: ${{ inputs.strategy }}
      canary_percent: 50
      canary_s: 20
      max_error_rate: 0.05
      min_requests: 5
      wait_s: 120
    retries: {count: 2, backoff: 0.1}
"""


def broken_package(dest: Path) -> PackageFiles:
    """A real package whose ONNX graph reshapes its first column to ``[1, 1]``: one row
    (the warm-up) runs, any request of more rows makes ONNX Runtime raise (a 500)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from loopml.packaging._manifest import ONNX_FILE, FileEntry, ModelManifest, sha256_hex

    good = package_files(dest)
    graph = onnx.load_model_from_string(good.files[ONNX_FILE])
    first = graph.graph.input[0].name
    for node in graph.graph.node:
        node.input[:] = [f"{first}_one_row" if i == first else i for i in node.input]
    shape = np.array([1, 1], dtype=np.int64)
    graph.graph.initializer.append(numpy_helper.from_array(shape, "one_row_shape"))
    reshape = helper.make_node("Reshape", [first, "one_row_shape"], [f"{first}_one_row"])
    graph.graph.node.insert(0, reshape)
    onnx.checker.check_model(graph)
    data = graph.SerializeToString()
    manifest = ModelManifest.model_validate_json(good.manifest)
    files = {**manifest.files, ONNX_FILE: FileEntry(sha256=sha256_hex(data), size=len(data))}
    patched = manifest.model_copy(update={"files": files})
    return PackageFiles({**good.files, ONNX_FILE: data}, patched.to_bytes())


def _passes_the_gate(platform: Platform, version: int, auc: float) -> None:
    report = EvaluationReport(
        eval_hash=EVAL,
        task="classification",
        primary_metric="roc_auc",
        metrics={"roc_auc": auc},
        rows=100,
    )
    gate.save_evaluation(platform.store, PROJECT, "cancer", version, report, actor="t")
    assert gate.judge_version(platform.store, PROJECT, "cancer", version, actor="t").passed


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform with ``cancer/1`` (good) and ``cancer/2`` (fails on requests), both passed
    by the gate, and the ``ship`` pipeline."""
    settings = home_settings(tmp_path_factory.mktemp("deploy-step-home"))
    running = Platform(settings)
    running.start()
    try:
        store, artifacts = running.store, running.artifacts
        register_model(settings, store, artifacts, fit(1.0))
        broken = broken_package(tmp_path_factory.mktemp("broken") / "pkg")
        assert register_files(store, artifacts, broken).version == 2
        _passes_the_gate(running, 1, 0.80)
        _passes_the_gate(running, 2, 0.90)
        service.apply_spec(store, PROJECT, SPEC, actor="t")
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


def _ship(platform: Platform, timeout_s: float = 200, **inputs: str) -> PipelineRun:
    run = service.start_run(platform.store, PROJECT, "ship", inputs, actor="t")
    return wait_run(platform.store, run.id, timeout_s=timeout_s)


def test_direct_creates_a_deployment_following_the_champion(platform: Platform) -> None:
    run = _ship(platform, model="cancer/1", deployment="api")
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert step_of(run, "deploy").outputs == {
        "deployment": "api",
        "revision": 1,
        "model": "cancer/1",
        "canary": {},
    }
    assert run.outputs == {"revision": 1}
    found = platform.serving.control.get(PROJECT, "api")
    assert found.spec.model == "cancer@champion"
    assert found.status == DeploymentStatus.READY
    assert found.traffic == {1: 100}
    assert resolve(platform.store, PROJECT, "cancer@champion").version == 1
    with httpx.Client(timeout=60, trust_env=False) as http:
        answer = platform.predict(http, "api")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-loopml-model-version"] == "1"
    platform.serving.control.delete(PROJECT, "api", actor="t")


class Traffic:
    """Two clients posting two-row predictions until stopped; statuses by version."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.platform, self.name = platform, name
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post) for _ in range(2)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _post(self) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            while not self._stop.wait(0.02):
                answer = self.platform.predict(http, self.name)
                version = answer.headers.get("x-loopml-model-version", "")
                self.answers.append((answer.status_code, version))


def test_a_canary_over_its_error_budget_is_removed_and_the_alias_stays(
    platform: Platform,
) -> None:
    control = platform.serving.control
    set_alias(platform.store, PROJECT, "cancer", "champion", 1, actor="t", force=True, reason="t")
    control.create(PROJECT, "guarded", {"model": "cancer@champion"}, actor="t")
    wait_until(
        lambda: control.get(PROJECT, "guarded").status == DeploymentStatus.READY,
        60,
        "the deployment did not become ready",
    )
    with Traffic(platform, "guarded") as traffic:
        run = _ship(platform, model="cancer/2", deployment="guarded", strategy="canary")
    assert run.status == RunStatus.FAILED
    step = step_of(run, "deploy")
    assert step.status == StepStatus.FAILED
    assert step.error is not None
    assert step.error.code == "canary_failed", step.error
    message = step.error.message
    assert "the canary of cancer/2 on 'guarded' was rolled back" in message
    counted = re.search(r"(\d+) of (\d+) requests failed", message)
    assert counted is not None, message
    assert int(counted[1]) == int(counted[2]) >= 5  # every canary answer was a 500
    assert "over the budget of 5.0%" in message
    # Not retried, though the step allows two retries: a failed canary is a verdict.
    assert len(step.attempts) == 1
    assert not step.error.retryable
    # The canary really answered 500s, and the primary never failed.
    assert (500, "2") in traffic.answers
    assert {status for status, version in traffic.answers if version == "1"} == {200}

    assert resolve(platform.store, PROJECT, "cancer@champion").version == 1
    found = control.get(PROJECT, "guarded")
    assert found.spec.canary is None
    assert found.traffic == {1: 100}
    wait_until(lambda: len(replica_processes("guarded")) == 1, 60, "the canary kept running")
    with httpx.Client(timeout=60, trust_env=False) as http:
        answer = platform.predict(http, "guarded")
    assert answer.status_code == 200
    assert answer.headers["x-loopml-model-version"] == "1"
    control.delete(PROJECT, "guarded", actor="t")
