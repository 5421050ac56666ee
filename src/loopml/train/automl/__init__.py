"""AutoML: FLAML's search over LightGBM, random forest, extra trees and a linear model,
inside a preprocessing pipeline that exports to ONNX.

``run_automl`` takes a training frame and returns the winner as one fitted scikit-learn
``Pipeline`` (``preprocess`` → optional ``scale`` → ``model``), every trial, and the timings.
It needs no store: ``on_trial`` sees each trial as it finishes (with the elapsed time and
the best score so far, what a progress bar shows). ``TrialRecorder`` is the adapter that
records those trials as child runs of a tracking run.

Learners: ``lgbm``, ``rf``, ``extra_tree``, and ``lrl1`` (L1 logistic regression) for
classification or ``enet`` (elastic net) for regression; each exports to ONNX inside the
pipeline. FLAML's other learners are refused with the reason (``EXCLUDED``); notably
``xgboost``, which is not searched: its default is scored before the search instead, where
xgboost is installed and the labels are ones ``XGBClassifier`` takes (``_defaults``).

Budget: the whole call aims at ``budget_s`` of wall time. LightGBM's default (and
XGBoost's) is scored first (``_defaults``) on the validation rows loopml makes for the
search (``_split``); after every trial FLAML's end moves so that the best model so far
can still be refit, and with ``include_packaging`` packaged, in what is left
(``_costs``); the final ensemble is decided inside the search when the clock reaches
the room kept for it, and a refused one hands that room back to the search (``_turn``);
the refit is on fewer rows only when it would clearly overrun (``final_fit_rows``).
``AutoMLResult.stopped`` says why the search stopped. The winner is the best score within
``max_model_mb`` and ``max_predict_ms`` (estimated: ``_costs``), the smallest package among
near-ties (``_select``).

Trials on a Ray cluster (``ray=connect_ray(address)``): the same defaults and search, as
Ray tasks of 1 CPU, as many at a time as the cluster has CPUs (``_ray``).

Columns: identifier-like ones (unique per row, monotone integers) are left out unless
named in ``keep_columns`` (``_identifiers``); ``AutoMLResult.used_columns`` lists the rest.

Repeatability: FLAML stops on wall time, so under a budget alone the number of trials,
and so the winner, depends on the machine's speed; the seed fixes the search's path, not
how far it gets. With ``max_iter`` the learners take turns instead of being chosen by
their measured cost, and cross-validation versus holdout is decided from ``budget_s``,
not from the time left: the same data, seed, budget and ``max_iter`` give the same
trials, winner and configuration, as long as the budget lets all of them finish.
"""

from loopml.train.automl._checks import MIN_ROWS as MIN_ROWS
from loopml.train.automl._engine import TrialCallback as TrialCallback
from loopml.train.automl._engine import run_automl as run_automl
from loopml.train.automl._final import FINAL_FIT_SLACK as FINAL_FIT_SLACK
from loopml.train.automl._final import final_fit_rows as final_fit_rows
from loopml.train.automl._flaml import CLASSIFIERS as CLASSIFIERS
from loopml.train.automl._flaml import EXCLUDED as EXCLUDED
from loopml.train.automl._flaml import REGRESSORS as REGRESSORS
from loopml.train.automl._metrics import metrics_for as metrics_for
from loopml.train.automl._metrics import resolve_metric as resolve_metric
from loopml.train.automl._preprocess import MAX_CATEGORIES as MAX_CATEGORIES
from loopml.train.automl._ray import RayTrials as RayTrials
from loopml.train.automl._ray import connect as connect_ray
from loopml.train.automl._recorder import PARENT_TAG as PARENT_TAG
from loopml.train.automl._recorder import TrialRecorder as TrialRecorder
from loopml.train.automl._recorder import result_batch as result_batch
from loopml.train.automl._recorder import trial_batch as trial_batch
from loopml.train.automl._types import AutoMLResult as AutoMLResult
from loopml.train.automl._types import Trial as Trial
from loopml.train.automl._warm import warm_packaging as warm_packaging

__all__ = [
    "CLASSIFIERS",
    "EXCLUDED",
    "FINAL_FIT_SLACK",
    "MAX_CATEGORIES",
    "MIN_ROWS",
    "PARENT_TAG",
    "REGRESSORS",
    "AutoMLResult",
    "RayTrials",
    "Trial",
    "TrialCallback",
    "TrialRecorder",
    "connect_ray",
    "final_fit_rows",
    "metrics_for",
    "resolve_metric",
    "result_batch",
    "run_automl",
    "trial_batch",
    "warm_packaging",
]
