"""AutoML on the datasets that ship with scikit-learn: better than a baseline, packaged as
ONNX with parity, inside its budget, repeatable under an iteration cap, tracked as child
runs in a real SQLite store, and refusing bad input with a clear message.

Most runs cap the search with ``max_iter`` (and a generous budget that is never reached),
so the suite stays fast and the results do not depend on the machine's speed; one test
runs on the wall-clock budget alone and times it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.model_selection import train_test_split

from loopml.core.errors import ValidationError
from loopml.core.run_search import RunFilter, RunSearch
from loopml.packaging import dates, load_model, package_model
from loopml.store import MetadataStore
from loopml.train import tracking
from loopml.train.automl import (
    CLASSIFIERS,
    MIN_ROWS,
    PARENT_TAG,
    REGRESSORS,
    AutoMLResult,
    Trial,
    TrialRecorder,
    final_fit_rows,
    run_automl,
)
from loopml.train.automl._flaml import XGBOOST_DEFAULT
from loopml.train.automl._select import TIE_SHARE
from loopml.train.evaluation import evaluate

EVAL_HASH = "ab" * 32
CAPPED = {"budget_s": 60.0, "max_iter": 12}
"""A search that stops on its trial cap long before its budget."""

TASKS = {
    "breast_cancer": ("classification", "roc_auc"),
    "wine": ("classification", "log_loss"),
    "diabetes": ("regression", "r2"),
}


def split(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    task, _ = TASKS[name]
    stratify = frame["target"] if task == "classification" else None
    train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=stratify)
    return train, test


def baseline(train: pd.DataFrame, task: str) -> Any:
    dummy = DummyClassifier(strategy="prior") if task == "classification" else DummyRegressor()
    return dummy.fit(train.drop(columns="target"), train["target"])


@pytest.fixture(scope="module")
def winners() -> dict[str, tuple[AutoMLResult, pd.DataFrame, pd.DataFrame]]:
    """One capped AutoML run per dataset, shared by the tests that judge the winner."""
    runs = {}
    for name, (task, _) in TASKS.items():
        train, test = split(name)
        result = run_automl(train, "target", task=task, seed=0, **CAPPED)
        runs[name] = (result, train, test)
    return runs


@pytest.mark.parametrize("name", list(TASKS))
def test_automl_clearly_beats_the_baseline(
    name: str, winners: dict[str, tuple[AutoMLResult, pd.DataFrame, pd.DataFrame]]
) -> None:
    result, train, test = winners[name]
    task, metric = TASKS[name]

    mine = evaluate(result.model, test, "target", task, eval_hash=EVAL_HASH)
    theirs = evaluate(baseline(train, task), test, "target", task, eval_hash=EVAL_HASH)

    assert result.metric == metric
    # The final ensemble, when tried, comes on top of the capped trials.
    assert len([t for t in result.trials if t.source != "ensemble"]) == CAPPED["max_iter"]
    if name == "breast_cancer":
        assert theirs.metrics["roc_auc"] == pytest.approx(0.5)
        assert mine.metrics["roc_auc"] >= 0.97
        assert mine.metrics["accuracy"] >= theirs.metrics["accuracy"] + 0.25
    elif name == "wine":
        assert mine.metrics["accuracy"] >= 0.9 > theirs.metrics["accuracy"] + 0.4
        assert mine.metrics["log_loss"] <= theirs.metrics["log_loss"] / 3
    else:
        assert theirs.metrics["r2"] <= 0.0
        assert mine.metrics["r2"] >= 0.3
        assert mine.metrics["rmse"] <= theirs.metrics["rmse"] * 0.85


@pytest.mark.parametrize("name", list(TASKS))
def test_the_winner_packages_as_onnx_with_parity(
    name: str,
    winners: dict[str, tuple[AutoMLResult, pd.DataFrame, pd.DataFrame]],
    tmp_path: Path,
) -> None:
    result, train, test = winners[name]

    package = package_model(result.model, tmp_path / "pkg", sample=train.drop(columns="target"))

    manifest = package.manifest
    assert manifest.primary == "onnx", manifest.onnx_error
    assert manifest.parity is not None
    assert manifest.parity.passed
    loaded = load_model(package.path)
    assert loaded.format == "onnx"
    features = test.drop(columns="target")
    if result.task == "classification":
        assert list(loaded.predict(features)) == list(result.model.predict(features))
        assert manifest.signature.classes == result.classes
    else:
        np.testing.assert_allclose(
            loaded.predict(features), result.model.predict(features), rtol=1e-4, atol=1e-3
        )


def mixed_frame(n: int = 400) -> pd.DataFrame:
    """Numbers with NaNs, a string category with missing values, a boolean, an integer,
    a timestamp (used as calendar numbers), a column AutoML cannot use (an empty one), and
    two targets: ``churn`` (text classes) and ``spend`` (a number)."""
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "age years": rng.normal(40, 10, n),
            "visits": rng.integers(0, 10, n),
            "plan": pd.Series(rng.choice(["basic", "plus", "pro"], n), dtype=object),
            "autopay": rng.choice([True, False], n),
            "signed up": pd.date_range("2024-01-01", periods=n, freq="h"),
            "notes": pd.Series([None] * n, dtype=object),
        }
    )
    frame.loc[::9, "age years"] = np.nan
    frame.loc[::6, "plan"] = None
    score = (frame["age years"].fillna(40) - 40) / 10 + (frame["plan"] == "pro") - frame["autopay"]
    frame["churn"] = np.where(score + rng.normal(0, 0.3, n) > -0.3, "yes", "no")
    frame["spend"] = 100 + 20 * score + frame["visits"] + rng.normal(0, 2, n)
    return frame


@pytest.mark.parametrize(
    ("target", "estimator"),
    [("churn", e) for e in CLASSIFIERS] + [("spend", e) for e in REGRESSORS],
)
def test_categorical_and_missing_values_train_and_export(
    target: str, estimator: str, tmp_path: Path
) -> None:
    frame = mixed_frame().drop(columns=({"churn", "spend"} - {target}))
    task = "classification" if target == "churn" else "regression"
    features = frame.drop(columns=target)

    result = run_automl(frame, target, task=task, estimators=[estimator], budget_s=60, max_iter=4)

    assert result.best_estimator == estimator
    assert set(result.dropped_columns) == {"notes"}
    package = package_model(result.model, tmp_path / "pkg", sample=features)
    assert package.manifest.primary == "onnx", package.manifest.onnx_error
    signature = package.manifest.signature
    assert [(c.name, c.type) for c in signature.inputs] == [
        ("age years", "float"),
        ("visits", "integer"),
        ("plan", "string"),
        ("autopay", "boolean"),
        ("signed up", "datetime"),
    ]
    # Missing values, an unseen category and "" reach ONNX and the native model alike.
    probe = features.iloc[:6].copy()
    probe["plan"] = [None, "", "enterprise", "pro", np.nan, "basic"]
    probe.loc[probe.index[0], "age years"] = np.nan
    probe.loc[probe.index[1], "signed up"] = pd.NaT
    loaded = load_model(package.path)
    native = dates.expand_frame(probe, signature)  # the pipeline takes the calendar numbers
    if task == "classification":
        np.testing.assert_allclose(
            loaded.predict_proba(probe), result.model.predict_proba(native), atol=1e-4
        )
        assert list(loaded.predict(probe)) == list(result.model.predict(native))
    else:
        np.testing.assert_allclose(loaded.predict(probe), result.model.predict(native), rtol=1e-5)


@pytest.mark.parametrize("target", ["churn", "spend"])
def test_lightgbm_takes_a_text_column_as_categories(target: str) -> None:
    # One-hot columns let a tree split off one value at a time; the code column beside
    # them lets LightGBM send any subset of the values one way (txhousing's 46 cities:
    # test RMSE 10,283 one-hot, 9,511 with the codes).
    frame = mixed_frame().drop(columns=({"churn", "spend"} - {target}))
    task = "classification" if target == "churn" else "regression"
    result = run_automl(frame, target, task=task, estimators=["lgbm"], budget_s=60, max_iter=1)

    preprocess, model = result.model.steps[0][1], result.model.steps[-1][1]
    names = list(preprocess.get_feature_names_out())
    assert names[-1] == "codes__plan"
    # Bagged (on the folds), every fold's model takes the codes so.
    bagged = run_automl(
        frame, target, task=task, estimators=["lgbm"], budget_s=60, max_iter=1, bagging=True
    )
    members = bagged.model.steps[-1][1].estimators_
    assert bagged.bagged_folds == len(members) == 5
    for member in [model, *members]:
        infos = member.booster_.dump_model()["feature_infos"]
        # LightGBM lists the values of a column it takes as categories, none of a numeric one.
        categorical = {int(k.split("_")[1]) for k, info in infos.items() if info["values"]}
        assert categorical == {len(names) - 1}


def _searched(trials: list[Trial]) -> list[Trial]:
    """The trials the search ran one after another (the defaults and FLAML's)."""
    return [t for t in trials if t.source != "ensemble"]


def test_the_budget_is_respected_and_every_trial_is_reported() -> None:
    # The budget, from the engine's own records: no trial began after the budget ran out
    # (trials run one after another, so none may follow one that ended past it), and the
    # search did not give up budget it was given (the call used at least 90 % of it: a
    # loaded machine only makes it longer). The whole call's wall time against 1.1 x the
    # budget is bench/automl_budget.py's to measure, on a quiet machine.
    frame = datasets.load_breast_cancer(as_frame=True).frame
    seen: list[Trial] = []
    budget = 8.0

    started = time.perf_counter()
    result = run_automl(
        frame, "target", task="classification", budget_s=budget, on_trial=seen.append
    )
    wall = time.perf_counter() - started

    assert wall >= 0.9 * budget, (wall, result.timings, seen[-3:])
    assert result.elapsed_s <= wall, (result.elapsed_s, wall)
    started_late = [t.iteration for t in _searched(seen)[:-1] if t.elapsed_s > budget]
    assert started_late == [], f"trials after {started_late} began past the budget: {seen[-3:]}"
    assert sum(result.timings.values()) == pytest.approx(result.elapsed_s, abs=0.01)
    assert seen == result.trials
    assert [t.iteration for t in seen] == list(range(1, len(seen) + 1))
    elapsed = [t.elapsed_s for t in seen]
    assert elapsed == sorted(elapsed)
    assert elapsed[-1] <= result.elapsed_s
    best = [t.best_score for t in seen]
    assert best == sorted(best)  # roc_auc: the best so far only rises
    # The winner is the best trial or, within TIE_SHARE of it, a smaller package.
    assert best[-1] * (1 - TIE_SHARE) <= result.best_score <= best[-1]
    assert result.best_score in [t.score for t in seen]
    # The library default is scored first; the search then tries the other learners (the
    # budget is too short on a busy machine to promise it reaches every one).
    assert (seen[0].estimator, seen[0].source) == ("lgbm", "default")
    # XGBoost's default next where it is installed, then the search, with at most one
    # final ensemble (decided inside the search, which may go on after it).
    sources = [t.source for t in seen]
    defaults = sources.count("default")
    assert set(sources[:defaults]) == {"default"}
    assert "default" not in sources[defaults:]
    assert sources.count("ensemble") <= 1
    assert result.stopped == "budget"
    # Both libraries' defaults are always scored (XGBoost's under FLAML's name for it,
    # xgb_limitdepth); how many more learners the search reaches in 8 s depends on the
    # machine's load (fewer than 3 under stress-ng --cpu 2), so that is not asserted here:
    # the capped, seeded search below pins its learners.
    scored_defaults = [t.estimator for t in seen if t.source == "default"]
    assert scored_defaults == ["lgbm", XGBOOST_DEFAULT], [(t.estimator, t.source) for t in seen]


def test_the_same_seed_gives_the_same_search_under_an_iteration_cap() -> None:
    train, _ = split("breast_cancer")

    def run(seed: int) -> AutoMLResult:
        return run_automl(train, "target", task="classification", seed=seed, **CAPPED)

    first, again, other = run(3), run(3), run(4)

    def trace(result: AutoMLResult) -> list[tuple[str, dict[str, Any], float]]:
        return [(t.estimator, t.config, t.score) for t in result.trials]

    assert trace(first) == trace(again)
    assert (first.best_estimator, first.best_config) == (again.best_estimator, again.best_config)
    features = train.drop(columns="target")
    np.testing.assert_array_equal(
        first.model.predict_proba(features), again.model.predict_proba(features)
    )
    assert trace(other) != trace(first)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    metadata = MetadataStore(f"sqlite:///{tmp_path / 'loopml.db'}")
    metadata.upgrade()
    yield metadata
    metadata.dispose()


def test_trials_are_recorded_as_child_runs(store: MetadataStore) -> None:
    parent = tracking.start_run(
        store, "default", "automl", heartbeat_timeout_s=60, actor="ada", create_experiment=True
    )
    recorder = TrialRecorder(store, parent, metric="roc_auc", actor="ada", flush_every_s=0.0)
    train, _ = split("breast_cancer")

    result = run_automl(
        train, "target", task="classification", on_trial=recorder, budget_s=60, max_iter=6
    )
    recorder.log_result(result)

    # Six capped trials, and the final ensemble's (when it was tried) is a child run too.
    assert len(recorder.child_run_ids) == len(result.trials)
    assert len([t for t in result.trials if t.source != "ensemble"]) == 6
    for run_id, trial in zip(recorder.child_run_ids, result.trials, strict=True):
        child = tracking.get_run(store, "default", run_id)
        assert child.parent_run_id == parent.id
        assert child.status == "FINISHED"
        assert child.params is not None
        assert child.metrics is not None
        assert child.tags is not None
        assert child.tags[PARENT_TAG] == parent.id
        assert child.tags["loopml.automl.trial"] == str(trial.iteration)
        assert child.params["estimator"] == trial.estimator
        assert {k: child.params[k] for k in trial.config} == {
            k: str(v) for k, v in trial.config.items()
        }
        assert child.metrics["roc_auc"] == pytest.approx(trial.score)
        assert child.metrics["train_time_s"] == pytest.approx(trial.train_time_s)
    found = tracking.search_runs(
        store,
        "default",
        RunSearch(
            filters=[RunFilter.parse(f"tags.{PARENT_TAG} = {parent.id}")],
            limit=100,
            children="flat",  # a search folds child runs by default
        ),
    )
    assert sorted(r.id for r in found.items) == sorted(recorder.child_run_ids)
    summary = tracking.get_run(store, "default", parent.id)
    assert summary.status == "RUNNING"
    assert summary.params is not None
    assert summary.metrics is not None
    assert summary.params["best_estimator"] == result.best_estimator
    assert summary.metrics["best_roc_auc"] == pytest.approx(result.best_score)
    assert summary.metrics["trials"] == len(result.trials)


def test_a_holdout_frame_scores_the_trials() -> None:
    train, holdout = split("wine")

    result = run_automl(train, "target", task="classification", eval_frame=holdout, **CAPPED)

    assert result.eval_method == "holdout"
    assert result.final_fit_rows == len(train)
    assert result.classes == [0, 1, 2]


def test_a_holdout_with_unseen_classes_is_refused() -> None:
    train, holdout = split("wine")
    holdout = holdout.assign(target=holdout["target"].replace({2: 7}))

    with pytest.raises(ValidationError, match=r"classes the training frame lacks: \['7'\]"):
        run_automl(train, "target", task="classification", eval_frame=holdout, **CAPPED)


def test_the_final_fit_is_capped_only_when_it_would_overrun() -> None:
    best = Trial(
        iteration=3,
        estimator="rf",
        config={},
        score=0.9,
        train_time_s=2.0,
        sample_size=10_000,
        elapsed_s=5.0,
        best_score=0.9,
        best_estimator="rf",
        improved=True,
    )

    assert final_fit_rows(best, 40_000, seconds_left=9.0) == 40_000
    assert final_fit_rows(best, 40_000, seconds_left=4.0) == 20_000
    assert final_fit_rows(best, 40_000, seconds_left=0.5) == 10_000
    assert final_fit_rows(None, 40_000, seconds_left=0.0) == 40_000


def small_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.choice(["a", "b"], n)})


REFUSALS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("no target", small_frame(), {"target": "label"}, r"target column 'label' is not in"),
    (
        "all-null target",
        small_frame().assign(y=None),
        {},
        r"target 'y' has no values: every row is null",
    ),
    ("one class", small_frame().assign(y="a"), {}, r"one class only \('a'\)"),
    (
        "too few rows",
        small_frame(MIN_ROWS - 1),
        {},
        rf"only {MIN_ROWS - 1} rows have a target: AutoML needs at least {MIN_ROWS}",
    ),
    (
        "continuous target",
        small_frame().assign(y=np.linspace(0, 1, 40)),
        {},
        r"40 distinct non-integer values: it looks continuous, so use task='regression'",
    ),
    (
        "text target for regression",
        small_frame(),
        {"task": "regression"},
        r"regression needs numbers; use task='classification'",
    ),
    (
        "binary metric on three classes",
        small_frame().assign(y=["a", "b", "c", "d"] * 10),
        {"metric": "roc_auc"},
        r"more than two classes, use 'roc_auc_ovr'",
    ),
    ("regression metric", small_frame(), {"metric": "rmse"}, r"metric 'rmse' does not fit"),
    ("unknown metric", small_frame(), {"metric": "auc"}, r"unknown metric 'auc'"),
    (
        "xgboost",
        small_frame(),
        {"estimators": ["lgbm", "xgboost"]},
        r"cannot search \['xgboost'\].*XGBoost is not searched: its default is scored first",
    ),
    ("zero budget", small_frame(), {"budget_s": 0}, r"budget_s must be a positive number"),
    ("NaN budget", small_frame(), {"budget_s": float("nan")}, r"budget_s must be a positive"),
    ("tiny budget", small_frame(), {"budget_s": 0.2}, r"a budget of 0.2 s is too small: the"),
    ("no features", small_frame()[["y"]], {}, r"no feature columns"),
    (
        "no usable feature",
        small_frame().assign(x=None),
        {},
        r"no usable feature column \(x: every value is missing",
    ),
]


@pytest.mark.parametrize(
    ("frame", "overrides", "message"),
    [pytest.param(f, o, m, id=i) for i, f, o, m in REFUSALS],
)
def test_bad_input_is_refused_clearly(
    frame: pd.DataFrame, overrides: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"target": "y", "task": "classification", "budget_s": 30}
    arguments.update(overrides)
    target = arguments.pop("target")

    with pytest.raises(ValidationError, match=message):
        run_automl(frame, target, **arguments)
