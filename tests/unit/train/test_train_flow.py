"""``loopml.train_model`` end to end in the embedded store: a dataset snapshot with a frozen
split, AutoML or custom training, registration, evaluation, the gate and promotion."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer

from loopml.core.datasets import SplitSpec
from loopml.core.errors import ConflictError, GateRequiredError
from loopml.core.run_search import RunSearch
from loopml.data import datasets, lake
from loopml.registry import gate, set_alias
from loopml.registry.evaluate import champion_scorer
from loopml.sdk.training import train_model
from loopml.settings import Settings
from loopml.train import tracking
from loopml.train.custom import UserCodeError
from loopml.wiring import open_artifact_store, open_metadata_store

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
SNAP_RUNS = RunSearch(experiment="cancer_snap", limit=1000)


def _cancer(shuffle_labels: bool = False) -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:, [0, 1, 2, 3, 7, 20, 21, 22, 27, 30]].copy()
    frame.columns = [f"f{i}" for i in range(9)] + ["y"]
    if shuffle_labels:
        frame["y"] = np.random.default_rng(1).permutation(frame["y"].to_numpy())
    return frame


@pytest.fixture
def settings() -> Settings:
    settings = Settings()
    store = open_metadata_store(settings)
    store.upgrade()
    artifacts = open_artifact_store(settings)
    for name, shuffled in (("cancer", False), ("noise", True)):
        lake.ingest_arrow(
            store, artifacts, "default", name, pa.Table.from_pandas(_cancer(shuffled)), actor="t"
        )
        datasets.create_version(
            store,
            artifacts,
            "default",
            f"{name}_snap",
            name,
            split=SplitSpec(eval_fraction=0.25, seed=7, stratify="y"),
            actor="t",
        )
    store.dispose()
    return settings


def test_automl_registers_and_the_gate_blocks_a_worse_model(settings: Settings) -> None:
    good = train_model(
        "cancer_snap",
        target="y",
        task="classification",
        budget_s=4,
        max_iter=6,
        register_as="cancer",
        settings=settings,
    )
    assert good.version is not None
    assert good.evaluation is not None
    assert good.evaluation.metrics["roc_auc"] > 0.9
    assert good.model_format == "onnx"
    assert good.trials >= 1
    store = open_metadata_store(settings)
    artifacts = open_artifact_store(settings)
    run = tracking.get_run(store, "default", good.run_id)
    assert run.status == "FINISHED"
    assert [i.ref for i in run.inputs or []] == ["cancer_snap@1"]
    children = tracking.search_runs(
        store, "default", RunSearch(experiment="cancer_snap", limit=1000, children="flat")
    )
    assert sum(1 for r in children.items if r.parent_run_id == good.run_id) == good.trials

    scorer = champion_scorer(store, artifacts, "default", actor="t")
    first = gate.judge_version(store, "default", "cancer", 1, actor="t", score_champion=scorer)
    assert first.passed
    set_alias(store, "default", "cancer", "champion", 1, actor="t")

    # Trained on shuffled labels: scored on the good snapshot's eval set it must lose.
    bad = train_model(
        "noise_snap",
        target="y",
        task="classification",
        budget_s=3,
        max_iter=3,
        register_as="cancer",
        settings=settings,
    )
    assert bad.version is not None
    from loopml.registry.evaluate import evaluate_version

    on_same = evaluate_version(
        store, artifacts, "default", "cancer", 2, actor="t", dataset="cancer_snap@1"
    )
    assert on_same.report.eval_hash == good.eval_hash
    # The gate's latency rules judge the model server's path (an eval row as a client's
    # JSON, one ONNX Runtime thread), the figure --max-predict-ms limits.
    assert on_same.report.details["latency_measured"] == "served"
    assert on_same.report.latency is not None
    verdict = gate.judge_version(
        store, "default", "cancer", 2, actor="t", eval_hash=good.eval_hash, score_champion=scorer
    )
    assert not verdict.passed
    assert verdict.champion_version == 1
    with pytest.raises(GateRequiredError):
        set_alias(store, "default", "cancer", "champion", 2, actor="t")
    store.dispose()


CRASHING_FIT = """
from pathlib import Path
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def fit(ctx):
    start = 0
    found = ctx.last_checkpoint()
    if found is not None:
        start = int((found / "epoch.txt").read_text()) + 1
    for epoch in range(start, 4):
        (ctx.checkpoint_dir / "epoch.txt").write_text(str(epoch))
        ctx.save_checkpoint(epoch)
        ctx.log_metric("epoch", epoch, step=epoch)
        marker = Path(ctx.params["marker"])
        if epoch == 1 and not marker.exists():
            marker.write_text("crashed once")
            raise RuntimeError("preempted at epoch 1")
    features = ctx.train.drop(columns=[ctx.target])
    Path(ctx.params["log"]).write_text(str(start))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(features, ctx.train[ctx.target])
"""


def test_custom_training_resumes_from_its_checkpoint(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "usercode").mkdir()
    (tmp_path / "usercode" / "crashy_fit.py").write_text(textwrap.dedent(CRASHING_FIT))
    monkeypatch.syspath_prepend(str(tmp_path / "usercode"))
    params = {"marker": str(tmp_path / "marker"), "log": str(tmp_path / "started-at")}
    with pytest.raises(UserCodeError, match="preempted at epoch 1") as failure:
        train_model(
            "cancer_snap",
            target="y",
            task="classification",
            entrypoint="crashy_fit:fit",
            params=params,
            settings=settings,
        )
    assert 'crashy_fit.py", line' in failure.value.details["traceback"]
    store = open_metadata_store(settings)
    failed = tracking.search_runs(
        store, "default", RunSearch(experiment="cancer_snap", limit=1000)
    ).items[0]
    assert failed.status == "FAILED"
    assert tracking.get_run(store, "default", failed.id).tags["loopml.failure"] == "user_code"

    outcome = train_model(
        "cancer_snap",
        target="y",
        task="classification",
        entrypoint="crashy_fit:fit",
        params=params,
        register_as="custom",
        settings=settings,
    )
    assert outcome.resumed_from == 1
    assert (tmp_path / "started-at").read_text() == "2"
    assert outcome.evaluation is not None
    assert outcome.evaluation.metrics["accuracy"] > 0.8
    # Success clears the checkpoints: a later training starts from scratch.
    third = train_model(
        "cancer_snap",
        target="y",
        task="classification",
        entrypoint="crashy_fit:fit",
        params=params,
        settings=settings,
    )
    assert third.resumed_from is None
    store.dispose()
    sys.modules.pop("crashy_fit", None)


def test_refusals(settings: Settings) -> None:
    store = open_metadata_store(settings)
    artifacts = open_artifact_store(settings)
    datasets.create_version(store, artifacts, "default", "plain", "cancer", actor="t")
    store.dispose()
    with pytest.raises(ConflictError, match="no train/eval split"):
        train_model("plain", target="y", task="classification", budget_s=2, settings=settings)
    from loopml.core.errors import ValidationError

    with pytest.raises(ValidationError, match="no column 'nope'"):
        train_model("cancer_snap", target="nope", task="classification", settings=settings)
    with pytest.raises(ValidationError, match="invalid entrypoint"):
        train_model(
            "cancer_snap",
            target="y",
            task="classification",
            entrypoint="no colon",
            settings=settings,
        )
