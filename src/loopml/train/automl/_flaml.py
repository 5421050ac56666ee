"""The one module that talks to FLAML: a typed search over a numeric matrix, and the
estimator a search result stands for.

FLAML is given the matrix the preprocessing made (its own ``DataTransformer`` is not
exportable) and integer-coded labels. Three of its internals are used, through a subclass,
because its public API has no equivalent; ``flaml>=2.3,<3`` is pinned and the AutoML tests
cover both:

* ``_log_trial`` is called after every trial when ``log_type="all"``: it is where each
  trial is reported to ``on_trial`` as it finishes (FLAML has no per-trial callback; its
  log file is only readable once the search is over).
* ``search_state.trained_estimator``: under holdout, with ``model_history``, each
  learner's best model so far, whose holdout predictions the final ensemble reuses.
* ``_search`` runs the search and then refits the winner on the full data. loopml refits
  the winner itself, on the original labels and inside its own pipeline, so FLAML's refit
  (which ignores the time budget under cross-validation) is switched off.

The linear learners (``lrl1``, ``enet``) standardize their input first: FLAML's own versions
see unscaled features, on which saga and coordinate descent converge slowly or not at all.
Tree learners get the unscaled matrix, which keeps their ONNX export exact.
"""

from __future__ import annotations

import importlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.train.automl._metrics import TaskKind
from loopml.train.automl._split import Validation

CLASSIFIERS: tuple[str, ...] = ("lgbm", "rf", "extra_tree", "lrl1")
REGRESSORS: tuple[str, ...] = ("lgbm", "rf", "extra_tree", "enet")
# FLAML's learner for XGBoost's own default (a depth limit of 6): scored before the search
# when xgboost is installed (``_defaults``), never searched.
XGBOOST_DEFAULT = "xgb_limitdepth"
# A trial config's record of the tree nodes its fitted models had (not a hyperparameter):
# the size and packaging estimates use it instead of the configuration's bound.
MEASURED_NODES = "loopml_tree_nodes"
EXCLUDED: dict[str, str] = {
    "xgboost": "XGBoost is not searched: its default is scored first when xgboost is "
    "installed and no learners are named, and XGBClassifier takes the class codes 0..k-1 "
    "only, not the original labels the winner is refit on",
    "xgb_limitdepth": "see xgboost",
    "catboost": "not installed (it pulls large dependencies) and not packageable",
    "sgd": "FLAML normalizes its rows outside the estimator, which a pipeline cannot repeat",
    "lrl2": "lrl1 covers the linear classifier; ask for it by that name",
}
"""FLAML learners loopml does not search, and why."""
_SCALED = frozenset({"lrl1", "enet"})
ALWAYS_CV_ROWS = 10_000


@dataclass(frozen=True)
class RawTrial:
    """One finished FLAML trial, as FLAML reports it."""

    estimator: str
    config: dict[str, Any]
    loss: float
    train_time_s: float
    sample_size: int
    source: str = "search"
    # The model's predictions on the validation rows, per fold (probabilities for
    # classes), when they came for free: for the final ensemble (``_ensemble``).
    predictions: list[np.ndarray] | None = None
    # The Ray node the trial ran on (``_ray``); empty for a trial of this process.
    node: str = ""
    # When it ended, in Unix seconds on the node that ran it (``_ray``: the driver hears of
    # a trial later, by how much depends on its load); 0 for a trial of this process, which
    # is recorded as it ends.
    ended: float = 0.0


@dataclass(frozen=True)
class SearchOutcome:
    """What the search found.

    Attributes:
        best_estimator: the learner name of the winner (``None`` when no trial finished).
        best_config: its hyperparameters (FLAML's names, JSON values).
        best_loss: its loss (lower is better).
        eval_method: ``cv`` or ``holdout``, as FLAML chose or was told.
    """

    best_estimator: str | None
    best_config: dict[str, Any]
    best_loss: float
    eval_method: str


def _flaml(module: str) -> Any:
    # FLAML ships py.typed but leaves its functions unannotated: reached as Any, it stays
    # inside this module, whose own functions are typed.
    return importlib.import_module(module)


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def clean_config(config: dict[str, Any]) -> dict[str, Any]:
    """A FLAML config with FLAML's bookkeeping keys dropped and numpy scalars unwrapped."""
    return {
        str(k): _json_value(v) for k, v in sorted(config.items()) if not str(k).startswith("FLAML_")
    }


def _scaled_factory(estimator_class: Any) -> Callable[..., Any]:
    def make(**params: Any) -> Any:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        return Pipeline([("scale", StandardScaler()), ("model", estimator_class(**params))])

    return make


def _learner_class(name: str, kind: TaskKind, categorical: tuple[int, ...] = ()) -> Any:
    """FLAML's learner class for ``name``; for LightGBM, one that splits the
    ``categorical`` columns (the category codes) as categories; for linear ones, a
    standardizing subclass."""
    learners = _flaml("flaml.automl.model")
    if name == "lgbm" and categorical:
        lgbm: Any = learners.LGBMEstimator

        class Categorical(lgbm):  # type: ignore[misc]
            def __init__(self, task: Any = kind, **config: Any) -> None:
                super().__init__(task, **config)
                # LightGBM's alias: under its own name, a parameter of the Dataset's
                # constructor draws a warning that it is ignored (it is not).
                self.params["categorical_column"] = list(categorical)

        Categorical.__name__ = "CategoricalLGBMEstimator"
        return Categorical
    plain = {
        "lgbm": learners.LGBMEstimator,
        "rf": learners.RandomForestEstimator,
        "extra_tree": learners.ExtraTreesEstimator,
        XGBOOST_DEFAULT: learners.XGBoostLimitDepthEstimator,
    }
    if name in plain:
        return plain[name]
    base: Any = learners.LRL1Classifier if name == "lrl1" else learners.ElasticNetEstimator

    class Scaled(base):  # type: ignore[misc]
        def __init__(self, task: Any = kind, **config: Any) -> None:
            super().__init__(task, **config)
            self.estimator_class: Any = _scaled_factory(self.estimator_class)

    Scaled.__name__ = f"Scaled{base.__name__}"
    return Scaled


def final_steps(
    name: str,
    config: dict[str, Any],
    kind: TaskKind,
    *,
    n_jobs: int = 1,
    categorical: tuple[int, ...] = (),
) -> list[tuple[str, Any]]:
    """Unfitted pipeline steps for a search result: ``[("scale", ...)?, ("model", ...)]``.

    The estimator is built the way FLAML builds it for a trial (its ``config2params``
    renames and fixed settings: ``max_bin`` from ``log_max_bin``, ``n_jobs``, seeds), with
    LightGBM splitting the ``categorical`` columns as categories.
    """
    task = _flaml("flaml.automl.task.factory").task_factory(kind)
    config = {k: v for k, v in config.items() if k != MEASURED_NODES}
    learner = _learner_class(name, kind, categorical)(task=task, n_jobs=n_jobs, **config)
    if name in _SCALED:
        from sklearn.preprocessing import StandardScaler

        model = learner.estimator_class(**learner.params).steps[-1][1]
        return [("scale", StandardScaler()), ("model", model)]
    return [("model", learner.estimator_class(**learner.params))]


def eval_method(rows: int, columns: int, budget_s: float) -> str:
    """``cv`` or ``holdout`` by FLAML's own rule (cross-validate when the budget allows it
    and the data is small), applied to the budget asked for, and ``cv`` for any frame of
    at most ``ALWAYS_CV_ROWS`` rows: there a 10 % holdout is a few hundred rows, too few to
    tell two good models apart (on digits, a 135-row holdout preferred a linear model
    with twice the default LightGBM's test log loss; on txhousing, a 645-row one preferred
    extra trees, test RMSE 9,853, to the LightGBM default, 9,511). FLAML would apply its rule to the
    search's share, which varies by milliseconds from run to run; near the threshold, two
    runs of the same search could then score trials differently.
    """
    cv_affordable = rows * columns / 0.9 < 10_000_000 * budget_s / 3600
    if rows <= ALWAYS_CV_ROWS:
        return "cv"
    return "cv" if cv_affordable and rows < 100_000 else "holdout"


def _holdout_predictions(
    search_state: Any, validation: Validation, kind: TaskKind
) -> list[np.ndarray] | None:
    """The trial's predictions on the holdout rows, when the trial is its learner's best so
    far: FLAML then keeps its fitted model (``trained_estimator``), and predicting the
    holdout costs far less than fitting it again for the ensemble. Under cross-validation
    FLAML keeps no fold's model."""
    model = search_state.trained_estimator
    improved = search_state.config is search_state.best_config
    # FLAML's estimator answers ones, with a warning, once its model is cleaned up.
    if validation.val is None or getattr(model, "_model", None) is None or not improved:
        return None
    x_val = validation.val[0]
    out = model.predict(x_val) if kind == "regression" else model.predict_proba(x_val)
    return [np.asarray(out, dtype=np.float64)]


def search(
    validation: Validation,
    *,
    kind: TaskKind,
    metric: str,
    time_budget_s: float,
    estimators: list[str],
    seed: int,
    max_iter: int | None,
    n_jobs: int,
    time_left: Callable[[], float],
    on_trial: Callable[[RawTrial], None],
    starting_points: dict[str, dict[str, Any]] | None = None,
) -> SearchOutcome:
    """Run FLAML's search on ``validation``'s rows for at most ``time_budget_s``.

    After every trial, ``time_left()`` says how many seconds the search may still take
    (the run's deadline less the time the final fit and packaging of the best model so
    far are expected to need; it may decide the final ensemble first, between two
    trials: ``_turn``): FLAML's budget is moved to match, so a slow winner found late
    shortens the search instead of overrunning the run, and a cheaper one found later
    (or a refused ensemble) gives the time back.

    With ``max_iter``, learners take turns (``roundrobin``) instead of being picked by
    their measured cost: the sequence of trials then depends on the seed and the data
    only, not on the machine's speed. ``starting_points`` start a learner's search from
    a given configuration instead of FLAML's cheapest one.
    """
    from sklearn.exceptions import ConvergenceWarning

    class _Hooked(_flaml("flaml").AutoML):  # type: ignore[misc]
        def _log_trial(self, search_state: Any, estimator: str) -> None:
            super()._log_trial(search_state, estimator)
            on_trial(
                RawTrial(
                    estimator=estimator,
                    config=clean_config(search_state.config),
                    loss=float(search_state.val_loss),
                    train_time_s=float(search_state.trial_time),
                    sample_size=int(search_state.sample_size),
                    predictions=_holdout_predictions(search_state, validation, kind),
                )
            )
            if max_iter is None:
                # time_left() first: it may decide the ensemble (seconds, on a busy
                # machine), and the time spent must count it. Read before, it did not,
                # and the search ended that much early (cancer at 8 s: 2.7 s of
                # ensemble, the run over at 5.2 s).
                left = time_left()
                self._state.time_budget = time.time() - self._start_time_flag + left

        def _search(self) -> None:
            self._state.retrain_final = False
            super()._search()

    automl = _Hooked()
    for name in estimators:
        automl.add_learner(name, _learner_class(name, kind, validation.categorical))
    settings: dict[str, Any] = {
        "task": "regression" if kind == "regression" else "classification",
        "metric": metric,
        "time_budget": time_budget_s,
        "estimator_list": list(estimators),
        "seed": seed,
        "n_jobs": n_jobs,
        "verbose": 0,
        "log_type": "all",
        "retrain_full": False,
        **validation.flaml_settings(),
        # Under holdout, FLAML then keeps each learner's best model (one each), so that
        # its holdout predictions can be read (``_holdout_predictions``).
        "model_history": validation.val is not None,
    }
    if max_iter is not None:
        settings.update(max_iter=max_iter, learner_selector="roundrobin")
    if starting_points:
        settings["starting_points"] = starting_points
    with warnings.catch_warnings():
        # saga and coordinate descent stop at FLAML's max_iter on some trials; the trial's
        # score already says how good that unconverged model is.
        warnings.simplefilter("ignore", ConvergenceWarning)
        automl.fit(validation.matrix, validation.labels, **settings)
    if automl.best_estimator is None:
        return SearchOutcome(None, {}, float("inf"), validation.method)
    return SearchOutcome(
        best_estimator=str(automl.best_estimator),
        best_config=clean_config(automl.best_config),
        best_loss=float(automl.best_loss),
        eval_method=validation.method,
    )
