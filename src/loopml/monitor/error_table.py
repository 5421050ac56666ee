"""How wrong a regressor was on its eval set, by the value it predicted: the table the
pre-label estimate for regressors reads (``estimate``).

A regressor gives no score of its own confidence, so CBPE has nothing to read. What its
eval set does say is how large its errors were where it predicted low, middling or high
values: the table bins the eval rows by prediction (``BINS`` bins of equal counts; rows
with the same prediction are never split) and keeps each bin's mean prediction, mean
absolute error and mean squared error. A live row's expected errors are its bin's,
interpolated linearly between the bins' mean predictions (the end bins' beyond them); a
window's estimated MAE is the mean of its rows' expected absolute errors, its RMSE the
root of the mean of their expected squared errors.

Like CBPE, the estimate follows a shift of the inputs only as far as it moves the
predictions into regions where the model erred more or less on its eval set; a change in
how the target relates to the inputs (concept drift) is invisible to it until labels come
back. The summaries say it is an estimate and by which method.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

BINS = 10
MIN_ROWS = 100
"""Fewer labelled eval rows than this give no table (as for the calibration table)."""


class ErrorBin(BaseModel):
    """One bin of eval rows, by prediction."""

    model_config = ConfigDict(frozen=True)

    lower: float = Field(description="The smallest prediction in the bin.")
    upper: float = Field(description="The largest prediction in the bin.")
    rows: int
    predicted: float = Field(description="The mean prediction of the bin's rows.")
    abs_error: float = Field(description="The mean absolute error of the bin's rows.")
    squared_error: float = Field(description="The mean squared error of the bin's rows.")


class ErrorTable(BaseModel):
    """A regressor's errors on its eval set, by prediction."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(description="Labelled eval rows measured.")
    mae: float = Field(description="The eval set's mean absolute error.")
    rmse: float = Field(description="The eval set's root mean squared error.")
    bins: list[ErrorBin]

    def expected(self, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each prediction's expected absolute and squared errors."""
        centres = np.asarray([b.predicted for b in self.bins], dtype=np.float64)
        absolute = np.asarray([b.abs_error for b in self.bins], dtype=np.float64)
        squared = np.asarray([b.squared_error for b in self.bins], dtype=np.float64)
        values = np.asarray(predictions, dtype=np.float64)
        return np.interp(values, centres, absolute), np.interp(values, centres, squared)


def error_table(predictions: np.ndarray, labels: np.ndarray) -> ErrorTable | None:
    """The table of ``predictions`` against numeric ``labels`` (rows where either is not a
    finite number left out); ``None`` under ``MIN_ROWS`` such rows."""
    predicted = np.asarray(predictions, dtype=np.float64).ravel()
    actual = np.asarray(labels, dtype=np.float64).ravel()
    kept = np.isfinite(predicted) & np.isfinite(actual)
    predicted, actual = predicted[kept], actual[kept]
    if len(predicted) < MIN_ROWS:
        return None
    order = np.argsort(predicted, kind="stable")
    predicted, actual = predicted[order], actual[order]
    errors = actual - predicted
    # Equal-count cuts, each moved to the end of its run of equal predictions.
    cuts = sorted(
        {
            int(np.searchsorted(predicted, predicted[i], side="right"))
            for i in (len(predicted) * k // BINS for k in range(1, BINS))
        }
        - {len(predicted)}
    )
    bins = []
    for part in np.split(np.arange(len(predicted)), cuts):
        if len(part) == 0:
            continue
        values, missed = predicted[part], errors[part]
        bins.append(
            ErrorBin(
                lower=float(values[0]),
                upper=float(values[-1]),
                rows=len(part),
                predicted=float(values.mean()),
                abs_error=float(np.abs(missed).mean()),
                squared_error=float((missed**2).mean()),
            )
        )
    return ErrorTable(
        rows=len(predicted),
        mae=float(np.abs(errors).mean()),
        rmse=float(np.sqrt((errors**2).mean())),
        bins=bins,
    )
