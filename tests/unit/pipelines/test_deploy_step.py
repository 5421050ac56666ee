"""The ``deploy`` built-in against a real platform (the API under uvicorn, its embedded
worker running the step, real replica processes behind the gateway).

``direct`` creates a deployment following ``cancer@champion`` and returns once it serves.
A ``canary`` is the deployments' automatic canary, judged by the one canary judge
(``core.canary``) with the server's ``canary`` policy from the monitor's figures: a version
whose replica answers 500 to every request of more than one row (its ONNX graph reshapes a
column to one row: it loads and warms up, then fails at inference) is rolled back on its
error rate; a version that answers every request but wrongly (trained on flipped labels) is
rolled back on its live accuracy, by the labels sent back through the feedback API. Either
way the step fails once, with the judge's reasons, and the champion alias stays where it was.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml.core.deployments import DeploymentStatus
from loopml.core.gate import EvaluationReport
from loopml.core.pipelines import PipelineRun, RunStatus, StepStatus
from loopml.pipelines import service
from loopml.registry import gate, resolve, set_alias
from loopml.settings import CanarySettings, MonitorSettings
from loopml.store import events
from tests.unit.deploy.deploy_support import (
    LabelledTraffic,
    PackageFiles,
    Platform,
    cancer_frame,
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
  canary_s: {type: number, default: 20}
  min_labels: {type: integer, default: 0}
  max_quality_drop: {type: number, default: 0.2}
  max_error_increase: {type: number, default: 0.02}
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
      canary_s: ${{ inputs.canary_s }}
      min_requests: 5
      min_labels: ${{ inputs.min_labels }}
      max_quality_drop: ${{ inputs.max_quality_drop }}
      max_error_increase: ${{ inputs.max_error_increase }}
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
    """A platform with ``cancer/1`` (good), ``cancer/2`` (fails on requests) and ``cancer/3``
    (wrong about 90 % of the time), all passed by the gate, and the ``ship`` pipeline."""
    home = home_settings(tmp_path_factory.mktemp("deploy-step-home"))
    # The judge's timings shortened through the settings (the lag must exceed the prediction
    # log's flush delay, 1 s); latency on a shared machine is noise, so it never decides.
    settings = home.model_copy(
        update={
            "monitor": MonitorSettings(interval_s=0.5, lag_s=2, windows=["1h"]),
            "canary": CanarySettings(
                interval_s=0.5,
                min_labels=20,
                max_quality_drop=0.2,
                max_latency_ratio=1000,
                latency_slack_ms=60_000,
            ),
        }
    )
    running = Platform(settings)
    running.start()
    try:
        store, artifacts = running.store, running.artifacts
        register_model(settings, store, artifacts, fit(1.0))
        broken = broken_package(tmp_path_factory.mktemp("broken") / "pkg")
        assert register_files(store, artifacts, broken).version == 2
        (wrong,) = register_model(settings, store, artifacts, flipped())
        assert wrong.version == 3
        # A good model the gate never judged: the registry refuses it the champion alias.
        (ungated,) = register_model(settings, store, artifacts, fit(0.5))
        assert ungated.version == 4
        _passes_the_gate(running, 1, 0.80)
        _passes_the_gate(running, 2, 0.90)
        _passes_the_gate(running, 3, 0.90)
        service.apply_spec(store, PROJECT, SPEC, actor="t")
        yield running
    finally:
        running.stop()
    assert replica_processes() == [], "replicas outlived the platform"


def flipped() -> Any:
    """A model trained on the cancer data's flipped labels: it answers, wrongly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = cancer_frame()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(frame, 1 - target)


def _ship(platform: Platform, timeout_s: float = 200, **inputs: Any) -> PipelineRun:
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
    # The deployments' canary judge decided, in its words (it counts 4xx and 5xx).
    counted = re.search(r"error rate 100\.00% \((\d+) of (\d+)\) against 0\.00%", message)
    assert counted is not None, message
    assert int(counted[1]) == int(counted[2]) >= 5  # every canary answer was a 500
    assert "over the margin of 2.00%" in message
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


def test_a_canary_worse_on_live_labels_is_rolled_back_by_the_deployments_judge(
    platform: Platform,
) -> None:
    control = platform.serving.control
    set_alias(platform.store, PROJECT, "cancer", "champion", 1, actor="t", force=True, reason="t")
    control.create(PROJECT, "labelled", {"model": "cancer@champion"}, actor="t")
    wait_until(
        lambda: control.get(PROJECT, "labelled").status == DeploymentStatus.READY,
        60,
        "the deployment did not become ready",
    )
    # canary_s is long: only a verdict on the labels can end the canary before it.
    with LabelledTraffic(platform, "labelled") as traffic:
        run = _ship(
            platform, model="cancer/3", deployment="labelled", strategy="canary", canary_s=600
        )
    assert run.status == RunStatus.FAILED
    step = step_of(run, "deploy")
    assert step.error is not None
    assert step.error.code == "canary_failed", step.error
    message = step.error.message
    assert "the canary of cancer/3 on 'labelled' was rolled back: accuracy " in message
    quality = re.search(r"accuracy ([\d.]+) \((\d+) labels\) against ([\d.]+)", message)
    assert quality is not None, message
    assert float(quality[3]) - float(quality[1]) > 0.5  # the flipped model is wrong
    assert int(quality[2]) >= 20  # the server's canary.min_labels
    assert "over the margin of 0.2" in message
    assert len(step.attempts) == 1
    # Every request was answered: it was the labels, not errors, that rolled it back.
    assert traffic.failures == []
    assert {version for _, version in traffic.answers} == {"1", "3"}

    # The same judge's decision, recorded as the deployment's own event.
    with platform.store.session() as session:
        found = events.list_(
            session, type="deployment.canary.rolled_back", project=PROJECT, limit=100
        ).items
    (event,) = [e for e in found if e.subject == "labelled"]
    assert event.actor == "system"
    assert event.payload["canary"]["version"] == 3
    assert event.payload["policy"]["min_labels"] == 20
    assert event.payload["policy"]["promote_after_s"] == 600
    assert event.payload["reasons"][0] in message

    assert resolve(platform.store, PROJECT, "cancer@champion").version == 1
    deployment = control.get(PROJECT, "labelled")
    assert (deployment.spec.model, deployment.spec.canary) == ("cancer@champion", None)
    assert deployment.traffic == {1: 100}
    control.delete(PROJECT, "labelled", actor="t")


def test_a_promoted_canary_the_gate_refuses_goes_back_to_the_champion(
    platform: Platform,
) -> None:
    control = platform.serving.control
    set_alias(platform.store, PROJECT, "cancer", "champion", 1, actor="t", force=True, reason="t")
    control.create(PROJECT, "ungated", {"model": "cancer@champion"}, actor="t")
    wait_until(
        lambda: control.get(PROJECT, "ungated").status == DeploymentStatus.READY,
        60,
        "the deployment did not become ready",
    )
    with Traffic(platform, "ungated") as traffic:
        run = _ship(platform, model="cancer/4", deployment="ungated", strategy="canary", canary_s=2)
        # The judge promoted the canary; the alias move was refused; version 1 serves again.
        wait_until(lambda: traffic.answers[-1:] == [(200, "1")], 60, "version 1 is not back")
    step = step_of(run, "deploy")
    assert step.error is not None
    assert step.error.code == "gate_required", step.error
    assert "version 4 of model 'cancer' cannot become 'champion'" in step.error.message
    with platform.store.session() as session:
        found = events.list_(
            session, type="deployment.canary.promoted", project=PROJECT, limit=100
        ).items
    assert [e.payload["canary"]["version"] for e in found if e.subject == "ungated"] == [4]
    assert {status for status, _ in traffic.answers} == {200}
    assert resolve(platform.store, PROJECT, "cancer@champion").version == 1
    deployment = control.get(PROJECT, "ungated")
    assert (deployment.spec.model, deployment.spec.canary) == ("cancer@champion", None)
    assert [r.version for r in deployment.revisions if deployment.traffic.get(r.number)] == [1]
    control.delete(PROJECT, "ungated", actor="t")


def test_the_steps_canary_policy_is_the_deployments_and_its_judges(platform: Platform) -> None:
    control = platform.serving.control
    set_alias(platform.store, PROJECT, "cancer", "champion", 1, actor="t", force=True, reason="t")
    control.create(PROJECT, "judged", {"model": "cancer@champion"}, actor="t")
    wait_until(
        lambda: control.get(PROJECT, "judged").status == DeploymentStatus.READY,
        60,
        "the deployment did not become ready",
    )
    inputs = {"min_labels": 7, "max_quality_drop": 0.3, "max_error_increase": 0.5}
    started = service.start_run(
        platform.store,
        PROJECT,
        "ship",
        {"model": "cancer/2", "deployment": "judged", "strategy": "canary", "canary_s": 600}
        | inputs,
        actor="t",
    )
    # No traffic yet: the judge holds, and the deployment carries the step's policy.
    canary = wait_until(
        lambda: control.get(PROJECT, "judged").spec.canary, 120, "no canary was set"
    )
    assert (canary.model, canary.percent, canary.auto) == ("cancer/2", 50, True)
    assert canary.promote_after_s == 600
    assert (canary.min_requests, canary.min_labels) == (5, 7)
    assert (canary.max_quality_drop, canary.max_error_rate_increase) == (0.3, 0.5)
    # Left to the server's canary settings.
    assert (canary.max_latency_ratio, canary.latency_slack_ms) == (None, None)

    with Traffic(platform, "judged"):
        run = wait_run(platform.store, started.id, timeout_s=200)
    step = step_of(run, "deploy")
    assert step.error is not None
    assert step.error.code == "canary_failed", step.error
    # Every canary answer failed: 100 % is over the step's margin of 50 %, not the server's 2 %.
    assert "against 0.00% on the stable revision: 100.00% more, over the margin of 50.00%" in (
        step.error.message
    )
    with platform.store.session() as session:
        found = events.list_(
            session, type="deployment.canary.rolled_back", project=PROJECT, limit=100
        ).items
    (event,) = [e for e in found if e.subject == "judged"]
    policy = event.payload["policy"]
    assert policy["min_labels"] == 7
    assert policy["max_quality_drop"] == 0.3
    assert policy["max_error_rate_increase"] == 0.5
    assert (policy["min_requests"], policy["promote_after_s"]) == (5, 600)
    assert policy["max_latency_ratio"] == 1000  # the server's
    assert resolve(platform.store, PROJECT, "cancer@champion").version == 1
    control.delete(PROJECT, "judged", actor="t")
