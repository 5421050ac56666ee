"""AutoML's latency limit (``max_predict_ms``, issue 38): each trial's one-row latency on the
model server is estimated, the winner is picked within the limit, the package's latency is
measured as the model server runs it and recorded on the run beside its size, and a limit
no model meets (estimated, or measured) fails saying so."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from loopml.cli import main
from loopml.core.datasets import SplitSpec
from loopml.core.errors import ValidationError
from loopml.data import datasets, lake
from loopml.packaging import package_model
from loopml.sdk.training import train_model
from loopml.settings import Settings
from loopml.train import tracking
from loopml.train.automl import _costs, _ensemble, run_automl
from loopml.train.automl._checks import check_training_data
from loopml.train.automl._engine import _inputs_ms
from loopml.train.automl._final import fit_final
from loopml.train.automl._flaml import final_steps
from loopml.train.automl._inputs import prepare
from loopml.train.evaluation import served_latency
from loopml.train.latency import LatencyCheck
from loopml.train.search_options import SearchOptions
from loopml.wiring import open_artifact_store, open_metadata_store

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
# Between the small models' estimates (about 0.008 ms on two columns) and LightGBM's
# default's on eight classes (100 trees a class: about 0.022 ms), with room for a loaded
# machine's measurement of a small model (0.009-0.011 ms).
LIMIT_MS = 0.015


def sectors(rows: int = 1600, seed: int = 0) -> pd.DataFrame:
    """Eight classes, the angle's sector of a point in the plane (5 % of labels noise):
    trees win, and a forest of trees a class is slow beside one small model."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(rows, 2))
    label = ((np.arctan2(x[:, 1], x[:, 0]) + math.pi) // (math.pi / 4)).astype(np.int64) % 8
    noisy = rng.uniform(size=rows) < 0.05
    label[noisy] = rng.integers(0, 8, int(noisy.sum()))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": label})


def _measured(model: Any, frame: pd.DataFrame, tmp_path: Path) -> float:
    features = frame.drop(columns="y")
    package = package_model(model, tmp_path, sample=features)
    return served_latency(package.path, package.manifest_sha256, features.head(1)).p50_ms


class Reference:
    """A small linear regression's package, timed beside a test's own: the costs were
    measured on a quiet machine, and a loaded one (a CI run's other workers) slows every
    call alike, so its measured latency over its estimate says how much slower the machine
    runs now."""

    def __init__(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(2)
        frame = pd.DataFrame({"p": rng.normal(size=400), "q": rng.normal(size=400)})
        frame["y"] = frame["p"] - 2 * frame["q"] + rng.normal(size=400)
        model, self.estimate = _fitted(frame, "regression", "enet", {})
        features = frame.drop(columns="y")
        self.package = package_model(model, tmp_path, sample=features)
        self.row = features.head(1)

    def slowdown(self) -> float:
        """The measured latency over the estimate, now."""
        package = self.package
        measured = served_latency(package.path, package.manifest_sha256, self.row).p50_ms
        return measured / self.estimate


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One reference package for the module's cases."""
    return Reference(tmp_path_factory.mktemp("reference"))


def _fitted(frame: pd.DataFrame, task: str, name: str, config: dict[str, Any]) -> Any:
    data = check_training_data(frame, "y", task)
    prep = prepare(data, "y", task, None, ())  # type: ignore[arg-type]
    if name == _costs.ENSEMBLE:
        steps = _ensemble.final_steps(config, data.kind, n_jobs=1)
    else:
        steps = final_steps(name, config, data.kind)
    model = fit_final(prep.preprocessor, prep.matrix, prep.data.labels, steps)
    inputs_ms = _inputs_ms(prep.plan, list(data.features.columns))
    estimate = _costs.predict_ms(name, config, len(prep.codes), prep.n_classes, inputs_ms=inputs_ms)
    return model, estimate


def _mixed() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = 600
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(4)})
    frame["colour"] = rng.choice(["red", "green", "blue"], size=rows)
    frame["day"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, rows), "D")
    frame["y"] = frame["x0"] * 2 + (frame["colour"] == "red") + rng.normal(size=rows)
    return frame


@pytest.mark.parametrize(
    ("frame", "task", "name", "config"),
    [
        (sectors(), "classification", "lrl1", {}),
        (sectors(), "classification", "lgbm", {"n_estimators": 100, "num_leaves": 31}),
        (sectors(), "classification", "rf", {"n_estimators": 50, "max_features": 1.0}),
        (
            sectors(),
            "classification",
            "ensemble",
            {
                "members": [
                    {"estimator": "lgbm", "config": {"n_estimators": 20}, "weight": 1},
                    {"estimator": "extra_tree", "config": {"n_estimators": 20}, "weight": 1},
                ]
            },
        ),
        (_mixed(), "regression", "lgbm", {"n_estimators": 50, "num_leaves": 15}),
    ],
    ids=["linear", "lgbm-8-classes", "forest", "ensemble", "text-and-date-columns"],
)
def test_the_latency_estimate_is_within_a_factor_of_two_of_the_served_package(
    frame: pd.DataFrame,
    task: str,
    name: str,
    config: dict[str, Any],
    reference: Reference,
    tmp_path: Path,
) -> None:
    model, estimate = _fitted(frame, task, name, config)

    before = reference.slowdown()
    measured = _measured(model, frame, tmp_path / "package")
    # On a quiet machine (a slowdown of 1 or less) the bound is the estimate's own; on a
    # loaded one the upper bound stretches by how much slower the reference ran meanwhile.
    slowdown = max(1.0, (before + reference.slowdown()) / 2)

    assert estimate / 2 <= measured <= estimate * 2 * slowdown, (estimate, measured, slowdown)


def test_a_tight_latency_limit_picks_a_faster_model_than_none() -> None:
    frame = sectors()
    common: dict[str, Any] = {"task": "classification", "budget_s": 30, "max_iter": 3}

    free = run_automl(frame, "y", n_jobs=1, **common)
    limited = run_automl(frame, "y", n_jobs=1, max_predict_ms=LIMIT_MS, **common)

    assert free.predict_ms > LIMIT_MS, [(t.estimator, t.predict_ms) for t in free.trials]
    assert limited.predict_ms <= LIMIT_MS < free.predict_ms
    assert limited.max_predict_ms == LIMIT_MS
    # The same trials (max_iter makes the search repeatable); the limit only chose.
    assert [t.config for t in limited.trials[:3]] == [t.config for t in free.trials[:3]]
    # Log loss: the faster model is the less accurate one here.
    assert free.metric == "log_loss"
    assert limited.best_score > free.best_score


@pytest.fixture
def settings() -> Settings:
    settings = Settings()
    store = open_metadata_store(settings)
    store.upgrade()
    artifacts = open_artifact_store(settings)
    table = pa.Table.from_pandas(sectors())
    lake.ingest_arrow(store, artifacts, "default", "sectors", table, actor="t")
    split = SplitSpec(eval_fraction=0.25, seed=7, stratify="y")
    datasets.create_version(
        store, artifacts, "default", "sectors_snap", "sectors", split=split, actor="t"
    )
    store.dispose()
    return settings


def test_the_run_records_the_measured_latency_and_size_within_the_limit(
    settings: Settings, reference: Reference
) -> None:
    # The estimates were measured on a quiet machine; this one may run every call slower
    # (an idle one measured the reference at 4.0 x its estimate, and LightGBM's small
    # 8-class model at 0.055-0.09 ms against 0.0083 estimated). The limit stretches by
    # the reference's slowdown, and the linear learner (whose package the reference's
    # resembles) keeps the winner's measurement in step with it, not exactly: in census
    # run 18 the winner measured 1.06 x the stretched limit, so the limit is twice that.
    limit = 2 * LIMIT_MS * max(1.0, reference.slowdown())
    outcome = train_model(
        "sectors_snap",
        target="y",
        task="classification",
        budget_s=20,
        max_iter=3,
        n_jobs=1,
        estimators=["lrl1"],
        max_predict_ms=limit,
        settings=settings,
    )

    assert outcome.predict_ms is not None
    assert 0 < outcome.predict_ms <= limit
    assert outcome.details["estimated_predict_ms"] <= limit
    store = open_metadata_store(settings)
    run = tracking.get_run(store, "default", outcome.run_id)
    store.dispose()
    assert run.metrics is not None
    assert run.params is not None
    assert run.metrics["predict_ms"] == pytest.approx(outcome.predict_ms)
    assert run.metrics["predict_p99_ms"] >= run.metrics["predict_ms"]
    assert run.metrics["package_mb"] == pytest.approx(outcome.package_mb)
    assert run.metrics["estimated_predict_ms"] <= limit
    assert run.params["max_predict_ms"] == f"{limit:g}"
    # Not given, the size limit is the default one: a package under 50 MB.
    assert run.params["max_model_mb"] == "50"


def test_a_limit_no_model_meets_fails_naming_the_limit_and_the_fastest() -> None:
    frame = sectors(rows=400)

    # Above what the inputs alone cost (about 0.008 ms for 2 number columns), below the
    # LightGBM default's (about 0.018 ms): its trial runs, and does not fit.
    with pytest.raises(ValidationError, match=r"within 0.01 ms") as raised:
        run_automl(
            frame,
            "y",
            task="classification",
            budget_s=20,
            max_iter=1,
            estimators=["lgbm"],
            max_predict_ms=0.01,
        )

    assert re.search(r"the fastest would take about 0\.0\d+ ms", raised.value.message)
    assert raised.value.details["fastest_ms"] > 0.01


def test_a_limit_below_what_the_inputs_take_fails_before_any_trial() -> None:
    trials: list[object] = []
    started = time.monotonic()
    with pytest.raises(ValidationError, match=r"reading the row's 2 columns alone") as raised:
        run_automl(
            sectors(rows=400),
            "y",
            task="classification",
            budget_s=20,
            max_predict_ms=0.001,
            on_trial=trials.append,
        )
    assert trials == []
    took = time.monotonic() - started
    # margin: 0.36 s measured at load 4.5; 10 s is 27x, and half the 20 s budget.
    assert took < 10, f"failed after {took:.2f} s"
    assert raised.value.details["inputs_ms"] > 0.001


def test_a_package_measured_over_the_limit_is_refused_with_the_measurement(
    tmp_path: Path,
) -> None:
    frame = sectors(rows=400)
    model, estimate = _fitted(frame, "classification", "lrl1", {})
    features = frame.drop(columns="y")
    package = package_model(model, tmp_path / "package", sample=features)
    check = LatencyCheck(features.head(1), 1e-6, estimator="lrl1", estimated_ms=estimate)

    with pytest.raises(ValidationError, match=r"over max_predict_ms 1e-06") as raised:
        check(package)

    assert check.latency is not None
    assert raised.value.details["measured_ms"] == pytest.approx(check.latency.p50_ms, abs=1e-5)
    assert "not uploaded or registered" in raised.value.message
    # Within the limit, the same check passes and keeps the measurement.
    LatencyCheck(features.head(1), 10.0, estimator="lrl1", estimated_ms=estimate)(package)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True])
def test_a_latency_limit_that_is_not_a_positive_number_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError, match=r"max_predict_ms must be a positive number"):
        SearchOptions(max_predict_ms=bad)


def test_the_cli_refuses_a_zero_latency_limit_before_training() -> None:
    result = CliRunner().invoke(
        main.app,
        ["train", "-d", "x", "-y", "y", "--task", "classification", "--max-predict-ms", "0"],
        env={"LOOPML_CLIENT_URL": "http://127.0.0.1:9"},
    )

    assert isinstance(result.exception, ValidationError)
    assert result.exception.details == {"field": "max_predict_ms"}
