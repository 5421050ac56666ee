"""The regression portfolio (early-stopped LightGBM configurations scored after the
defaults), its trials as ensemble candidates of their own, the blend kept by its rows'
gains and within the limits, and the greedy selection's NumPy losses (issue 53)."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from loopml.train.automl import _ensemble, _flaml, _portfolio, run_automl
from loopml.train.automl._select import NO_LIMITS
from loopml.train.automl._split import Validation, make_validation
from loopml.train.automl._trial_log import TrialLog
from tests.unit.train.test_automl_ensemble import trial


def steps_target(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth target with noise: a learning rate of 0.05 needs far more than 100 trees,
    and past some number of them the trees fit the noise, so early stopping stops."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(rows, 4))
    y = np.sin(2 * x[:, 0]) * 3 + x[:, 1] ** 2 + x[:, 2] + rng.normal(scale=1.0, size=rows)
    return x, y


def validation(method: str) -> Validation:
    x, y = steps_target(1200)
    return make_validation(x, y, kind="regression", method=method, seed=0, holdout=None)


@pytest.mark.parametrize("method", ["holdout", "cv"])
def test_a_configuration_stops_where_its_validation_loss_stops_improving(method: str) -> None:
    found = validation(method)

    raw = _portfolio.score_config(
        "lgbm_slow", found, metric="rmse", n_jobs=1, deadline=float("inf")
    )

    assert raw is not None
    assert (raw.estimator, raw.source) == ("lgbm", "portfolio")
    # Stopped by its validation loss, far short of the cap; its refit grows that many trees.
    assert 20 < raw.config["n_estimators"] < _portfolio.MAX_ROUNDS
    assert raw.config["learning_rate"] == 0.05
    assert 0 < raw.config[_flaml.MEASURED_NODES] <= raw.config["n_estimators"] * (2 * 31 - 1)
    # Its predictions on each fold's validation rows come with it; its loss is theirs.
    truth = [y_val for *_, y_val in found.folds()]
    assert raw.predictions is not None
    assert [len(p) for p in raw.predictions] == [len(t) for t in truth]
    rmse = [
        float(np.sqrt(np.mean((p - t) ** 2))) for p, t in zip(raw.predictions, truth, strict=True)
    ]
    assert raw.loss == pytest.approx(float(np.mean(rmse)))


def test_a_deadline_ends_the_rounds() -> None:
    found = validation("holdout")

    past = _portfolio.score_config("lgbm_slow", found, metric="rmse", n_jobs=1, deadline=0.0)

    # Stopped after its first round: one tree, a valid if weak model.
    assert past is not None
    assert past.config["n_estimators"] == 1


def test_only_the_configurations_whose_estimated_time_fits_are_scored() -> None:
    found = validation("holdout")
    scored: list[_flaml.RawTrial] = []

    # The default took 1 s: the cheapest configuration is estimated at 5 s, over the 4 s
    # left, so none is started.
    none = _portfolio.score_portfolio(
        found, metric="rmse", n_jobs=1, seconds=lambda: 4.0, on_trial=scored.append, default_s=1.0
    )
    # With time enough, in order, as many as max_iter's share allows.
    two = _portfolio.score_portfolio(
        found, metric="rmse", n_jobs=1, seconds=lambda: 1e9, on_trial=scored.append, count=2
    )

    assert none == 0
    assert two == 2
    assert [r.config["num_leaves"] for r in scored] == [31, 128]
    assert [r.config["min_child_samples"] for r in scored] == [20, 3]


def frame(rows: int = 600) -> pd.DataFrame:
    x, y = steps_target(rows, seed=1)
    return pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(target=y)


def test_a_regression_scores_the_portfolio_after_the_defaults() -> None:
    result = run_automl(
        frame(), "target", task="regression", metric="rmse", budget_s=60, max_iter=5, n_jobs=1
    )

    sources = [(t.estimator, t.source) for t in result.trials if t.source != "ensemble"]
    assert sources[:4] == [
        ("lgbm", "default"),
        (_flaml.XGBOOST_DEFAULT, "default"),
        ("lgbm", "portfolio"),
        ("lgbm", "portfolio"),
    ]
    assert sources[4][1] == "search"
    portfolio = [t.config for t in result.trials if t.source == "portfolio"]
    assert [c["num_leaves"] for c in portfolio] == [31, 128]
    assert [c["learning_rate"] for c in portfolio] == [0.05, 0.05]


def test_no_portfolio_for_classes_or_named_learners() -> None:
    data = frame()
    classes = data.assign(target=(data["target"] > data["target"].median()).astype(int))

    named = run_automl(
        data, "target", task="regression", budget_s=60, max_iter=3, estimators=["lgbm"]
    )
    binary = run_automl(classes, "target", task="classification", budget_s=60, max_iter=3)

    assert "portfolio" not in {t.source for t in named.trials}
    assert "portfolio" not in {t.source for t in binary.trials}
    assert _portfolio.applies("regression", "rmse", ["lgbm", "rf"], all_learners=True)
    assert not _portfolio.applies("regression", "mape", ["lgbm"], all_learners=True)
    assert not _portfolio.applies("regression", "rmse", ["rf"], all_learners=True)


def test_each_portfolio_trial_is_a_candidate_of_its_own() -> None:
    trials = [
        trial(1, "lgbm", 500.0, source="default"),
        trial(2, "xgb_limitdepth", 505.0, source="default"),
        trial(3, "lgbm", 495.0, source="portfolio"),
        trial(4, "lgbm", 498.0, source="portfolio"),
        trial(5, "lgbm", 499.0),
        trial(6, "rf", 520.0),
        trial(7, "extra_tree", 530.0),
    ]

    found = _ensemble.candidates(trials, "min", NO_LIMITS)

    # The two portfolio trials beside the best of each of three learners (lgbm's searched
    # or default best, XGBoost's default, the forest).
    assert [t.iteration for t in found] == [3, 4, 5, 2, 6]
    assert [t.family for t in found] == ["lgbm#3", "lgbm#4", "lgbm", "xgb_limitdepth", "rf"]


def test_the_log_keeps_each_portfolio_trials_predictions_beside_the_learners() -> None:
    log = TrialLog(0.0, "min", None, lambda name, config: 1.0)
    fold = [np.zeros(3)]

    log(_flaml.RawTrial("lgbm", {}, 5.0, 0.1, 10, source="default", predictions=fold))
    log(_flaml.RawTrial("lgbm", {}, 4.0, 0.1, 10, source="portfolio", predictions=fold))
    log(_flaml.RawTrial("lgbm", {}, 4.5, 0.1, 10, source="portfolio", predictions=fold))

    assert sorted(log.predictions) == [1, 2, 3]


@pytest.mark.parametrize("metric", ["rmse", "mse", "mae", "r2"])
def test_the_numpy_losses_are_flamls(metric: str) -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=500) * 10
    predicted = y + rng.normal(size=500) * 3
    ml = importlib.import_module("flaml.automl.ml")

    mine = _ensemble.fold_loss(metric, "regression", predicted, y)

    assert mine == pytest.approx(float(ml.sklearn_metric_loss_score(metric, predicted, y)))


def test_the_selection_adds_no_member_past_the_limits() -> None:
    rng = np.random.default_rng(4)
    truth = [rng.normal(size=200) for _ in range(5)]
    noise = [[t + rng.normal(size=200) for t in truth] for _ in range(3)]

    free = _ensemble._greedy(noise, truth, "rmse", "regression")
    bounded = _ensemble._greedy(noise, truth, "rmse", "regression", lambda m: 2 not in m)

    # Averaging independent errors helps: every model gets votes, unless one is too big.
    assert set(free) == {0, 1, 2}
    assert set(bounded) == {0, 1}


def blend(row_gains: np.ndarray) -> _ensemble.Blend:
    members = [(trial(1, "lgbm", 1.0), 2), (trial(2, "rf", 1.1), 1)]
    # Fold gains that a paired test on five folds would refuse: one fold much worse.
    gains = (0.3, 0.4, -0.9, 0.5, 0.2)
    return _ensemble.Blend(members, loss=1.0, fit_s=0.0, gains=gains, row_gains=row_gains)


def test_a_regression_blend_is_judged_by_its_rows_gains() -> None:
    rng = np.random.default_rng(5)
    steady = rng.normal(loc=1.0, scale=4.0, size=4000)  # 1 a row, 16 standard errors
    noise = rng.normal(loc=0.0, scale=4.0, size=4000) + 0.01  # no real gain

    assert blend(steady).margin > np.mean(blend(steady).gains)  # the folds alone: refused
    assert blend(steady).clear_gain
    assert not blend(noise - noise.mean() + 0.001).clear_gain
    summary = blend(steady).summary()
    assert summary["kept"] is True
    assert summary["mean_row_gain"] == pytest.approx(float(steady.mean()))
    assert 0 < summary["row_margin"] < summary["mean_row_gain"]


@pytest.mark.parametrize("method", ["holdout", "cv"])
def test_rows_are_the_pairs_only_under_holdout(method: str) -> None:
    found = validation(method)
    rng = np.random.default_rng(6)
    truth = [y_val for *_, y_val in found.folds()]
    noisy = [[t + rng.normal(size=len(t)) for t in truth] for _ in range(2)]
    pool = [trial(1, "lgbm", 1.0), trial(2, "rf", 1.05)]

    made = _ensemble.blend(
        pool,
        found,
        kind="regression",
        metric="rmse",
        n_jobs=1,
        deadline=float("inf"),
        known={1: noisy[0], 2: noisy[1]},
    )

    assert made is not None
    # A holdout's models are fitted once: its rows are the pairs. Folds' rows share their
    # fold's models, so the folds are.
    if method == "holdout":
        assert made.row_gains is not None
        assert len(made.row_gains) == len(truth[0])
    else:
        assert made.row_gains is None
        assert made.row_margin is None
