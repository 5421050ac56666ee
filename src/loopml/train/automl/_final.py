"""The final fit: the winner refit on all rows, or on as many as the budget allows."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from loopml.train.automl._metrics import TaskKind
from loopml.train.automl._types import Trial

# When refitting the winner on every row would overrun the budget by more than this share,
# it is refit on as many rows as fit (``final_fit_rows``).
FINAL_FIT_SLACK = 0.05


def final_fit_rows(best: Trial | None, rows: int, seconds_left: float) -> int:
    """How many rows the winner can be refit on in ``seconds_left``: all of them, unless
    its trial's time per row says the refit would not fit; never fewer than its trial used.
    """
    if best is None or best.sample_size <= 0 or best.train_time_s <= 0:
        return rows
    # A trial's time covers fitting and scoring (every fold, under cross-validation), so
    # this overestimates a single fit: the cap only bites when the refit clearly overruns,
    # which happens when FLAML found the winner on a sample of a large frame.
    estimate = best.train_time_s * rows / best.sample_size
    if estimate <= seconds_left:
        return rows
    affordable = int(rows * max(seconds_left, 0.0) / estimate)
    return min(rows, max(best.sample_size, affordable))


def subsample(codes: np.ndarray, size: int, kind: TaskKind, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded sample of ``size`` rows, stratified by class code."""
    rng = np.random.default_rng(seed)
    if kind == "regression":
        return np.sort(rng.choice(len(codes), size, replace=False))
    share = size / len(codes)
    picked = [
        rng.permutation(rows)[: max(1, round(share * len(rows)))]
        for rows in (np.flatnonzero(codes == c) for c in np.unique(codes))
    ]
    return np.sort(np.concatenate(picked))


def fit_final(
    preprocessor: Any, matrix: np.ndarray, labels: np.ndarray, steps: list[tuple[str, Any]]
) -> Any:
    """``Pipeline([preprocess, *steps])`` with ``steps`` fitted on the preprocessed matrix.

    The preprocessor is already fitted on the whole training frame; only the estimator
    (and its scaler) are fitted here, on the original labels, so the model's classes are
    the target's own values.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import Pipeline

    tail = Pipeline(steps)
    with warnings.catch_warnings():
        # As in the search: a linear winner may stop at its max_iter, as it did there.
        warnings.simplefilter("ignore", ConvergenceWarning)
        tail.fit(matrix, labels)
    return Pipeline([("preprocess", preprocessor), *tail.steps])
