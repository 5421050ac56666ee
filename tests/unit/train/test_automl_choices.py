"""What AutoML chooses, beyond the search itself: the library default scored first on the
same validation rows, the winner by score then size under a size limit, identifier-like
columns left out unless kept, and the threads it uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn import datasets
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from loopml.core.errors import ValidationError
from loopml.packaging import package_model
from loopml.train.automl import Trial, run_automl
from loopml.train.automl._costs import size_mb, tree_nodes
from loopml.train.automl._defaults import DEFAULTS
from loopml.train.automl._flaml import MEASURED_NODES, XGBOOST_DEFAULT
from loopml.train.automl._identifiers import identifier_reason
from loopml.train.automl._inputs import resolve_n_jobs
from loopml.train.automl._select import NO_LIMITS, CostLimits, no_winner, pick_winner


def cancer() -> pd.DataFrame:
    frame: pd.DataFrame = datasets.load_breast_cancer(as_frame=True).frame
    return frame


def test_the_lightgbm_default_is_the_first_trial_scored_on_the_search_folds() -> None:
    frame = cancer()

    result = run_automl(frame, "target", task="classification", budget_s=60, max_iter=3, seed=4)

    first = result.trials[0]
    assert (first.estimator, first.source) == ("lgbm", "default")
    assert {k: v for k, v in first.config.items() if k != MEASURED_NODES} == DEFAULTS["lgbm"]
    # XGBoost's default next where it is installed (test_automl_defaults), then the search.
    assert [t.source for t in result.trials[1:]][-1] == "search"
    assert result.eval_method == "cv"
    # The same score by hand: LightGBM's defaults on the seeded folds the search used.
    x = frame.drop(columns="target").to_numpy()
    y = frame["target"].to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=4).split(x, y)
    scores = [
        roc_auc_score(
            y[val], LGBMClassifier(verbose=-1).fit(x[fit], y[fit]).predict_proba(x[val])[:, 1]
        )
        for fit, val in folds
    ]
    assert first.score == pytest.approx(float(np.mean(scores)), abs=1e-9)
    # The nodes its fold models had (scaled to all rows, at most 31 leaves a tree) size its
    # package and its packaging time
    fitted = 0.0
    for fit, _ in folds_again(x, y):
        trees = LGBMClassifier(verbose=-1).fit(x[fit], y[fit]).booster_.dump_model()["tree_info"]
        scale = len(y) / len(fit)
        fitted = max(fitted, sum(2 * min(t["num_leaves"] * scale, 31) - 1 for t in trees))
    # (never above the configuration's bound: min_child_samples caps the leaves too; on
    # these 569 rows the scaled count reaches it, on digits' 10 classes it stays a quarter under).
    bound = tree_nodes("lgbm", DEFAULTS["lgbm"], len(frame), 2)
    assert first.config[MEASURED_NODES] == round(min(fitted, bound))
    # Never worse than the default on those folds.
    assert result.best_score >= first.score - 1e-3 * first.score


def folds_again(x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(StratifiedKFold(5, shuffle=True, random_state=4).split(x, y))


def trial(iteration: int, score: float, size: float, estimator: str = "rf") -> Trial:
    return Trial(
        iteration=iteration,
        estimator=estimator,
        config={},
        score=score,
        train_time_s=0.1,
        sample_size=100,
        elapsed_s=float(iteration),
        best_score=score,
        best_estimator=estimator,
        improved=True,
        size_mb=size,
    )


def test_the_winner_is_the_best_score_then_the_smallest_package() -> None:
    trials = [
        trial(1, 0.9000, 0.5, "lgbm"),
        trial(2, 0.9500, 40.0),
        trial(3, 0.9495, 3.0),  # within 0.1 % of the best: a tie the smaller one wins
        trial(4, 0.9400, 0.1),
        trial(5, float("nan"), 0.01),
    ]

    assert pick_winner(trials, "max", NO_LIMITS) == trials[2]
    assert pick_winner(trials, "max", CostLimits(2.0)) == trials[3]
    assert pick_winner(trials, "max", CostLimits(0.05)) is None
    assert (
        pick_winner([trial(1, 540.0, 9.0), trial(2, 540.4, 1.0)], "min", NO_LIMITS).iteration == 2
    )
    assert (
        pick_winner([trial(1, 540.0, 9.0), trial(2, 541.0, 1.0)], "min", NO_LIMITS).iteration == 1
    )
    error = no_winner(trials, CostLimits(0.05), 30.0)
    assert "no model of the 4 trials fits in 0.05 MB" in error.message
    assert "about 0.1 MB" in error.message


def test_a_size_limit_bounds_the_package_and_an_impossible_one_is_refused(tmp_path: Path) -> None:
    frame = cancer()
    limit = 0.3

    result = run_automl(
        frame, "target", task="classification", budget_s=60, max_iter=8, max_model_mb=limit
    )

    assert result.size_mb <= limit
    assert result.max_model_mb == limit
    package = package_model(result.model, tmp_path / "pkg", sample=frame.drop(columns="target"))
    assert sum(f.stat().st_size for f in package.path.iterdir()) / 1e6 <= limit
    with pytest.raises(ValidationError, match=r"fits in 0.001 MB"):
        run_automl(
            frame, "target", task="classification", budget_s=60, max_iter=3, max_model_mb=0.001
        )
    with pytest.raises(ValidationError, match=r"max_model_mb must be a positive number"):
        run_automl(frame, "target", task="classification", budget_s=60, max_model_mb=-1)


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("lgbm", DEFAULTS["lgbm"]),
        ("lgbm", DEFAULTS["lgbm"] | {"n_estimators": 300, "num_leaves": 8}),
        ("extra_tree", {"n_estimators": 10, "max_features": 1.0, "max_leaves": 4000}),
        ("xgb_limitdepth", DEFAULTS["xgb_limitdepth"]),
    ],
)
def test_the_size_estimate_bounds_the_real_package(
    name: str, config: dict[str, Any], tmp_path: Path
) -> None:
    frame = datasets.load_diabetes(as_frame=True).frame
    # Only the fitted preprocessing is used; XGBoost is not a learner one may name.
    learner = "lgbm" if name == "xgb_limitdepth" else name
    result = run_automl(
        frame, "target", task="regression", budget_s=60, max_iter=1, estimators=[learner]
    )
    from loopml.train.automl import _flaml
    from loopml.train.automl._final import fit_final

    model = fit_final(
        result.model.named_steps["preprocess"],
        result.model.named_steps["preprocess"].transform(frame.drop(columns="target")),
        frame["target"].to_numpy(),
        _flaml.final_steps(name, config, "regression"),
    )
    package = package_model(model, tmp_path / "pkg", sample=frame.drop(columns="target"))
    actual = sum(f.stat().st_size for f in package.path.iterdir()) / 1e6
    if name == XGBOOST_DEFAULT:
        # Its trial records the nodes its models had (the bound of 2^6 leaves a tree is
        # loose): the estimate then counts those.
        dump = model.named_steps["model"].get_booster().get_dump()
        config = config | {MEASURED_NODES: sum(tree.count("\n") for tree in dump)}
    estimate = size_mb(name, config, len(frame), 0, 10)

    assert actual <= estimate <= 3 * actual + 0.05


def with_identifiers(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    signal = rng.normal(size=n)
    return pd.DataFrame(
        {
            "row_id": np.arange(1000, 1000 + n),  # unique integers
            "order_no": np.repeat(np.arange(n // 2) * 7, 2),  # monotone, half distinct
            "customer": [f"c-{i:05d}" for i in rng.permutation(n)],  # unique text
            "signal": signal,  # unique floats: a measurement, not an identifier
            "visits": np.sort(rng.integers(0, 8, n)),  # sorted, few distinct values
            "plan": rng.choice(["a", "b"], n),
            "y": (signal + rng.normal(0, 0.5, n) > 0).astype(int),
        }
    )


def test_identifier_like_columns_are_found_by_their_values() -> None:
    frame = with_identifiers()

    found = {c: identifier_reason(frame[c]) for c in frame.columns}

    assert found["row_id"] == "identifier-like: unique per row (300 distinct values in 300 rows)"
    assert found["order_no"] == (
        "identifier-like: monotone in row order (150 distinct values in 300 rows)"
    )
    assert found["customer"] is not None
    assert [c for c, reason in found.items() if reason is None] == [
        "signal",
        "visits",
        "plan",
        "y",
    ]
    assert identifier_reason(pd.Series(np.arange(10))) is None  # too few rows to judge
    assert identifier_reason(pd.Series([True, False] * 20)) is None


def test_identifier_like_columns_are_left_out_unless_kept() -> None:
    frame = with_identifiers()

    result = run_automl(frame, "y", task="classification", budget_s=60, max_iter=2)
    kept = run_automl(
        frame, "y", task="classification", budget_s=60, max_iter=2, keep_columns=["row_id"]
    )

    assert set(result.identifier_columns) == {"row_id", "order_no", "customer"}
    assert set(result.identifier_columns) <= set(result.dropped_columns)
    assert result.used_columns == ["signal", "visits", "plan"]
    assert list(result.model.named_steps["preprocess"].feature_names_in_) == [
        "signal",
        "visits",
        "plan",
    ]
    assert set(kept.identifier_columns) == {"order_no", "customer"}
    assert kept.used_columns == ["row_id", "signal", "visits", "plan"]
    with pytest.raises(ValidationError, match=r"keep_columns names columns the frame lacks"):
        run_automl(frame, "y", task="classification", budget_s=60, keep_columns=["nope"])


def test_threads_are_what_was_asked_or_the_idle_cores() -> None:
    cores = os.cpu_count() or 1

    assert resolve_n_jobs(2) == 2
    assert resolve_n_jobs(-1) == cores
    assert 1 <= resolve_n_jobs(None) <= cores
    with pytest.raises(ValidationError, match="n_jobs must be -1"):
        resolve_n_jobs(0)
    result = run_automl(
        cancer(), "target", task="classification", budget_s=60, max_iter=2, n_jobs=2
    )
    assert result.n_jobs == 2
    assert result.model.named_steps["model"].get_params()["n_jobs"] == 2
    # Bagged, each fold's model has the threads.
    bagged = run_automl(
        cancer(), "target", task="classification", budget_s=60, max_iter=1, n_jobs=2,
        bagging=True,
    )  # fmt: skip
    bag = bagged.model.named_steps["model"]
    assert bagged.bagged_folds == len(bag.estimators_) == 5
    assert {member.get_params()["n_jobs"] for member in bag.estimators_} == {2}


def test_the_linear_learner_is_left_out_when_its_trial_would_take_the_budget() -> None:
    from loopml.train.automl._inputs import LINEAR_SHARE, check_estimators

    allowed = ["lgbm", "rf", "extra_tree", "enet"]
    within = {"linear_trial_s": LINEAR_SHARE * 60, "budget_s": 60}
    assert check_estimators(None, "regression", **within) == allowed
    beyond = {"linear_trial_s": LINEAR_SHARE * 60 + 1, "budget_s": 60}
    assert check_estimators(None, "binary", **beyond) == ["lgbm", "rf", "extra_tree"]
    assert check_estimators(["enet"], "regression", linear_trial_s=1e6, budget_s=1) == ["enet"]
    # First candidate (embeddings): it leads, and may take half the budget.
    assert check_estimators(None, "binary", linear_first=True, **beyond) == [
        "lrl1",
        "lgbm",
        "rf",
        "extra_tree",
    ]


def test_the_linear_cost_model_keeps_it_on_embeddings_not_on_diamonds() -> None:
    """One linear trial by the cost model: 1,500 x 384 embeddings of 3 classes (the text
    issue's reviews, where the cell-count rule dropped it) fit a 60 s budget; diamonds'
    elastic net (11 s measured) does not."""
    from loopml.train.automl._engine import _linear_trial_s

    embeddings = _linear_trial_s(1500, 384, 3, "cv")
    assert embeddings < 0.1 * 60
    assert 1500 * 384 > 500_000  # the old rule's limit
    assert _linear_trial_s(36_409 * 9 // 10, 26, 0, "holdout") > 0.1 * 60


def test_on_embeddings_the_linear_head_is_the_first_candidate() -> None:
    """Dense, wide, few rows (what a text encoder gives): 1,400 x 384 is past the old
    500,000-cell limit that left the linear learner out; it now leads, its default first."""
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(1400, 384))
    frame = pd.DataFrame(matrix, columns=[f"e{i:04d}" for i in range(384)])
    frame["y"] = np.where(matrix[:, :20].sum(axis=1) > 0, "pos", "neg")
    result = run_automl(
        frame, "y", task="classification", budget_s=60, max_iter=1, linear_first=True
    )
    assert result.estimators[0] == "lrl1"
    assert [(t.estimator, t.source) for t in result.trials] == [("lrl1", "default")]
    assert result.best_score > 0.95
