"""The library defaults, scored before the search on the same validation rows.

A default LightGBM is a strong model on tabular data, and FLAML's search starts from a
cheap configuration far from it (4 trees of 4 leaves): under a short budget the search can
end below the default. Scoring the default first, as a trial like any other, makes the
AutoML's winner at least as good as the default on the validation rows.

The default is written in FLAML's hyperparameter names (``log_max_bin`` 8 is LightGBM's
``max_bin`` 255), so that the winner is rebuilt the same way whichever trial it came from.
Scores use FLAML's own prediction and loss functions: a default and a searched trial are
compared on the same number.

XGBoost's default (100 trees of depth 6, learning rate 0.3) is scored too when xgboost is
installed and the caller did not name the learners; it is FLAML's ``xgb_limitdepth``
learner, which is not searched: only its default competes. ``XGBClassifier`` only takes
the class codes 0..k-1 as labels, and the winner is refit on the original labels, so for
other labels (strings, or integers that are not 0..k-1) it is left out.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
import warnings
from typing import Any

import numpy as np

from loopml.train.automl import _costs, _flaml
from loopml.train.automl._metrics import TaskKind
from loopml.train.automl._split import Validation

XGBOOST = _flaml.XGBOOST_DEFAULT

DEFAULTS: dict[str, dict[str, Any]] = {
    "lgbm": {
        "n_estimators": 100,
        "num_leaves": 31,
        "min_child_samples": 20,
        "learning_rate": 0.1,
        "log_max_bin": 8,
        "colsample_bytree": 1.0,
        "reg_alpha": 0.0,
        "reg_lambda": 0.0,
    },
    # XGBoost's own defaults, each written out: FLAML's learner sets the ones not given
    # to values of its own (a seed, a thread count) but none of these.
    XGBOOST: {
        "n_estimators": 100,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "learning_rate": 0.3,
        "subsample": 1.0,
        "colsample_bylevel": 1.0,
        "colsample_bytree": 1.0,
        "reg_alpha": 0.0,
        "reg_lambda": 1.0,
    },
}
"""Each learner's library default, in FLAML's names: the trials scored before the search."""

LINEAR_DEFAULTS: dict[str, dict[str, Any]] = {
    "lrl1": {"C": 1.0},
    "enet": {"alpha": 0.1, "l1_ratio": 0.5, "selection": "cyclic"},
}
"""The linear learners' defaults (FLAML's starting values), scored first when the linear
learner is the first candidate (``run_automl``'s ``linear_first``)."""


# FLAML's search space for lgbm starts its regularization at 1/1024, not 0.
_FLAML_FLOOR = {"reg_alpha": 1 / 1024, "reg_lambda": 1 / 1024}


def starting_points(names: list[str]) -> dict[str, dict[str, Any]]:
    """The defaults as FLAML starting points (inside its search space) for ``names``."""
    return {
        name: {k: max(v, _FLAML_FLOOR.get(k, v)) for k, v in config.items()}
        for name, config in DEFAULTS.items()
        if name in names
    }


def xgboost_installed() -> bool:
    """Whether xgboost can be imported (``xgboost-cpu`` or ``xgboost``)."""
    return importlib.util.find_spec("xgboost") is not None


def default_learners(
    names: list[str],
    *,
    all_learners: bool,
    classes: np.ndarray | None,
    linear_first: bool = False,
) -> list[str]:
    """The learners whose default is scored first, in order: those of ``names`` with one in
    ``DEFAULTS``, then XGBoost's when ``all_learners`` (the caller named none), xgboost is
    installed, and the labels are numbers XGBoost takes as they are (``classes`` is
    ``None`` for a regression, or exactly the integers 0..k-1). With ``linear_first`` the
    linear learner's default (of ``names``) comes before them all."""
    chosen = [n for n in LINEAR_DEFAULTS if linear_first and n in names]
    chosen += [n for n in DEFAULTS if n in names]
    fits = classes is None or (
        classes.dtype.kind in "iu" and np.array_equal(classes, np.arange(len(classes)))
    )
    if all_learners and fits and xgboost_installed():
        chosen.append(XGBOOST)
    return chosen


def _fitted_nodes(model: Any, scale: float) -> float:
    """The tree nodes of a fitted XGBoost or LightGBM model, scaled up to a refit on
    ``scale`` times its rows (a tree grows with the rows it splits; a LightGBM tree no
    further than its ``num_leaves``); 0 for any other model."""
    if hasattr(model, "get_booster"):
        dump: list[str] = model.get_booster().get_dump()
        return scale * sum(tree.count("\n") for tree in dump)
    if hasattr(model, "booster_"):
        text: str = model.booster_.model_to_string()
        leaves = [int(line[11:]) for line in text.splitlines() if line.startswith("num_leaves=")]
        cap = max(int(model.get_params().get("num_leaves", 31)), 1)
        return float(sum(2 * min(scale * n, cap) - 1 for n in leaves))
    return 0.0


def _ml() -> Any:
    return importlib.import_module("flaml.automl.ml")


def score_default(
    name: str,
    validation: Validation,
    *,
    kind: TaskKind,
    metric: str,
    n_jobs: int,
) -> _flaml.RawTrial:
    """Fit ``name``'s default on each fold and return its mean validation loss as a trial."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import Pipeline

    task = importlib.import_module("flaml.automl.task.factory").task_factory(kind)
    ml = _ml()
    labels = np.unique(validation.labels)
    config = dict(DEFAULTS.get(name) or LINEAR_DEFAULTS[name])
    losses: list[float] = []
    predictions: list[np.ndarray] = []
    # Built before the clock starts: the first build imports FLAML's learners, which is
    # no part of what a refit of this model would cost.
    models = [
        Pipeline(
            _flaml.final_steps(
                name, config, kind, n_jobs=n_jobs, categorical=validation.categorical
            )
        )
        for _ in range(1 if validation.val is not None else validation.splitter.get_n_splits())
    ]
    started = time.perf_counter()
    nodes = 0.0
    for model, (x_fit, y_fit, x_val, y_val) in zip(models, validation.folds(), strict=True):
        with warnings.catch_warnings():
            # saga stops at its max_iter on wide data; the score says how good that is.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_fit, y_fit)
        nodes = max(nodes, _fitted_nodes(model[-1], len(validation.labels) / len(y_fit)))
        predicted = ml.get_y_pred(model, x_val, metric, task)
        whole = model.predict(x_val) if kind == "regression" else model.predict_proba(x_val)
        predictions.append(np.asarray(whole, dtype=np.float64))
        losses.append(float(ml.sklearn_metric_loss_score(metric, predicted, y_val, labels)))
    if nodes:
        # Never above the configuration's bound, which a scaled-up count can pass.
        classes = 0 if kind == "regression" else len(labels)
        bound = _costs.tree_nodes(name, config, len(validation.labels), classes)
        config[_flaml.MEASURED_NODES] = round(min(nodes, bound))
    return _flaml.RawTrial(
        estimator=name,
        config=config,
        loss=float(np.mean(losses)),
        train_time_s=time.perf_counter() - started,
        sample_size=len(validation.labels),
        source="default",
        predictions=predictions,
    )
