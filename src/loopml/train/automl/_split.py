"""The validation scheme every trial is scored on, made by loopml so that its own trials
(the library defaults, the ensemble) and FLAML's are scored on exactly the same rows.

Cross-validation: a seeded ``KFold`` (``StratifiedKFold`` for classes) handed to FLAML as
its splitter object, which FLAML then uses as is (no reshuffle, no rare-class copies).
Holdout: a seeded share of the rows (stratified for classes) handed to FLAML as
``X_val``/``y_val``; FLAML trains its trials on the rest. A caller's ``eval_frame`` is
a holdout too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.train.automl._metrics import TaskKind

N_SPLITS = 5
HOLDOUT_SHARE = 0.1


@dataclass(frozen=True)
class Validation:
    """How trials are scored.

    Attributes:
        method: ``cv`` or ``holdout``.
        matrix, labels: the rows FLAML searches on (the training part under holdout).
        val: the holdout rows and labels (``None`` under cross-validation).
        splitter: the cross-validation splitter (``None`` under holdout).
        categorical: the matrix's category-code columns (``_preprocess.code_columns``),
            which LightGBM splits as categories.
    """

    method: str
    matrix: np.ndarray
    labels: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None
    splitter: Any
    categorical: tuple[int, ...] = ()

    def folds(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """``(x_fit, y_fit, x_val, y_val)`` for each fold (one under holdout)."""
        if self.val is not None:
            yield self.matrix, self.labels, self.val[0], self.val[1]
            return
        for fit, val in self.splitter.split(self.matrix, self.labels):
            yield self.matrix[fit], self.labels[fit], self.matrix[val], self.labels[val]

    def flaml_settings(self) -> dict[str, Any]:
        """The keyword arguments that make FLAML score on these rows."""
        if self.val is not None:
            return {"eval_method": "holdout", "X_val": self.val[0], "y_val": self.val[1]}
        return {"eval_method": "cv", "split_type": self.splitter}


def _stratifiable(codes: np.ndarray, parts: int) -> bool:
    return bool(np.unique(codes, return_counts=True)[1].min() >= parts)


def make_validation(
    matrix: np.ndarray,
    codes: np.ndarray,
    *,
    kind: TaskKind,
    method: str,
    seed: int,
    holdout: tuple[np.ndarray, np.ndarray] | None,
    categorical: tuple[int, ...] = (),
) -> Validation:
    """The validation scheme for ``method`` (``cv`` or ``holdout``); a given ``holdout``
    (the caller's eval frame, preprocessed) is used as is."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    if holdout is not None:
        return Validation("holdout", matrix, codes, holdout, None, categorical)
    classes = kind != "regression"
    if method == "cv":
        stratify = classes and _stratifiable(codes, N_SPLITS)
        cls = StratifiedKFold if stratify else KFold
        splitter = cls(N_SPLITS, shuffle=True, random_state=seed)
        return Validation("cv", matrix, codes, None, splitter, categorical)
    stratify_by = codes if classes and _stratifiable(codes, 2) else None
    fit, val = train_test_split(
        np.arange(len(codes)), test_size=HOLDOUT_SHARE, random_state=seed, stratify=stratify_by
    )
    fit, val = np.sort(fit), np.sort(val)
    return Validation(
        "holdout", matrix[fit], codes[fit], (matrix[val], codes[val]), None, categorical
    )
