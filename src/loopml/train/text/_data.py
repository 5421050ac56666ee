"""The text column, the labels, and the order batches are drawn in.

The order of every epoch is a function of the seed and the epoch alone (a generator seeded
with both), so "where training is in the data" is just the global step: a resumed run
draws exactly the batches an uninterrupted one would have drawn next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from loopml.core.errors import ValidationError

TextTask = Literal["text-classification", "text-regression"]
TEXT_TASKS: tuple[str, ...] = ("text-classification", "text-regression")


def base_task(task: TextTask) -> Literal["classification", "regression"]:
    """The signature's task of a text task (what evaluation and the gate see)."""
    return "classification" if task == "text-classification" else "regression"


def pick_text_column(frame: pd.DataFrame, target: str, given: str | None) -> str:
    """The column of texts: ``given``, else the one string column that is not the target.

    Raises:
        ValidationError: ``given`` is not a string column, or no or several candidates.
    """
    strings = [
        str(c)
        for c in frame.columns
        if c != target and (ptypes.is_object_dtype(frame[c]) or ptypes.is_string_dtype(frame[c]))
    ]
    if given is not None:
        if given not in frame.columns:
            raise ValidationError(
                f"no text column {given!r}: the columns are {list(map(str, frame.columns))[:20]}",
                details={"field": "text_column"},
            )
        if given not in strings:
            raise ValidationError(
                f"column {given!r} holds {frame[given].dtype}, not text",
                details={"field": "text_column"},
            )
        return given
    if len(strings) != 1:
        raise ValidationError(
            f"cannot tell which column holds the text ({strings[:20] or 'no string column'}): "
            "name it with --text-column",
            details={"field": "text_column", "candidates": strings[:20]},
        )
    return strings[0]


def texts_of(frame: pd.DataFrame, column: str) -> list[str]:
    """The column's values as strings, a missing one as ""."""
    return [v if isinstance(v, str) else "" for v in frame[column].tolist()]


@dataclass(frozen=True)
class Targets:
    """The target as the model learns it.

    Attributes:
        task: the text task.
        classes: the class labels in output order (classification), as plain Python values.
        mean, std: the regression target's scale; the model learns ``(y - mean) / std``
            and the exported graph undoes it.
    """

    task: TextTask
    classes: list[Any] | None = None
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, task: TextTask, y: pd.Series[Any]) -> Targets:
        """Learn the classes or the scale from the training target.

        Raises:
            ValidationError: a missing target, fewer than two classes, non-numbers to regress.
        """
        if y.isna().any():
            raise ValidationError("the target has missing values: drop or fill those rows first")
        if task == "text-classification":
            classes = [v.item() if isinstance(v, np.generic) else v for v in np.unique(y)]
            if len(classes) < 2:
                raise ValidationError(f"classification needs two classes or more, got {classes}")
            return cls(task, classes=classes)
        values = pd.to_numeric(y, errors="coerce")
        if values.isna().any():
            raise ValidationError("text-regression needs a numeric target")
        std = float(values.std(ddof=0))
        return cls(task, mean=float(values.mean()), std=std if std > 0 else 1.0)

    @property
    def outputs(self) -> int:
        """The head's width: one per class, or one value."""
        return len(self.classes) if self.classes is not None else 1

    def encode(self, y: pd.Series[Any]) -> np.ndarray:
        """Class indices (int64) or scaled values (float32)."""
        if self.classes is None:
            values = pd.to_numeric(y).to_numpy(dtype=np.float64)
            scaled: np.ndarray = ((values - self.mean) / self.std).astype(np.float32)
            return scaled
        index = {c: i for i, c in enumerate(self.classes)}
        try:
            return np.array([index[v.item() if isinstance(v, np.generic) else v] for v in y])
        except KeyError as exc:
            raise ValidationError(f"label {exc.args[0]!r} was not seen in training") from exc


def epoch_order(rows: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``rows`` for ``epoch``: the same for the same seed, always."""
    return np.random.default_rng([seed, epoch]).permutation(rows)


def batch_indices(rows: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The rows of global step ``step`` (epochs follow each other; the last batch may be short)."""
    per_epoch = -(-rows // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = epoch_order(rows, seed, epoch)
    return order[position * batch_size : (position + 1) * batch_size]


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and attention mask padded to the longest sequence."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask
