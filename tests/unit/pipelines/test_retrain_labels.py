"""The shipped ``retrain-labels`` loop learns from a deployment's answers and the labels sent
back for them: the labelled rows become a dataset version (no lineage column among its
features), AutoML trains on them, the version is evaluated and judged by the gate (whose
policy here no version can pass, so the deploy is skipped and the run succeeds)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml.core.gate import GatePolicy
from loopml.core.pipelines import RunStatus, StepStatus
from loopml.data.datasets import get_version
from loopml.faces.context import AppContext
from loopml.pipelines import loops, service
from loopml.platform.startup import build_context
from loopml.predictions.labelled import LINEAGE_COLUMNS
from loopml.registry import gate
from loopml.settings import Settings
from tests.unit.api.test_feedback import make_deployment
from tests.unit.deploy.deploy_support import cancer_frame, fit, register_model
from tests.unit.monitor.logged import log_labels, log_predictions

from .conftest import running_worker, step_of, wait_run

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    settings = Settings(home=tmp_path / "home", database={"url": f"sqlite:///{tmp_path}/m.db"})
    built = build_context(settings)
    built.store.upgrade()
    make_deployment(built, "churn-api")
    yield built
    built.store.dispose()


def test_retrain_labels_trains_on_the_labelled_answers_and_the_gate_judges_it(
    ctx: AppContext,
) -> None:
    # The model exists, with a policy no version can pass: the gate judges and refuses.
    register_model(ctx.settings, ctx.store, ctx.artifacts, fit(1.0), name="churn")
    policy = GatePolicy.model_validate({"thresholds": [{"metric": "roc_auc", "min": 1.01}]})
    gate.set_policy(ctx.store, "default", "churn", policy, actor="t")
    frame, target = cancer_frame()
    at = datetime.now(UTC) - timedelta(hours=1)
    keys = log_predictions(ctx, "churn-api", frame, at, [1] * len(frame), batch=10)
    log_labels(ctx, "churn-api", keys, [int(y) for y in target], at + timedelta(minutes=10))

    service.apply_spec(ctx.store, "default", loops.text("retrain-labels"), actor="t")
    inputs = {"deployment": "churn-api", "model": "churn", "target": "malignant", "budget_s": 3}
    with running_worker(ctx.store, ctx.artifacts, ctx.settings):
        started = service.start_run(ctx.store, "default", "retrain-labels", inputs, actor="t")
        run = wait_run(ctx.store, started.id, timeout_s=240)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert step_of(run, "labelled").outputs["rows"] == len(frame)
    dataset = get_version(ctx.store, "default", step_of(run, "snapshot").outputs["dataset"])
    assert [c.name for c in dataset.columns] == [*frame.columns, "malignant"]
    assert not set(LINEAGE_COLUMNS) & {c.name for c in dataset.columns}
    assert [(s.table, s.version) for s in dataset.sources] == [("churn_api__labelled", 0)]
    assert step_of(run, "train").status == StepStatus.SUCCEEDED
    assert step_of(run, "register").outputs["model"] == "churn/2"
    assert step_of(run, "evaluate").outputs["metrics"]["roc_auc"] > 0.8
    assert step_of(run, "gate").outputs["passed"] is False
    assert step_of(run, "deploy").status == StepStatus.SKIPPED
