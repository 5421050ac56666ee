"""Small fitted models on the datasets that ship with scikit-learn (no downloads)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest


def frame_and_target(name: str) -> tuple[pd.DataFrame, pd.Series[Any]]:
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    return bunch.data, bunch.target


@pytest.fixture(scope="session")
def mixed_frame() -> tuple[pd.DataFrame, pd.Series[Any]]:
    """Numeric columns with NaNs, an integer column and a string category."""
    rng = np.random.default_rng(7)
    n = 300
    frame = pd.DataFrame(
        {
            "age years": rng.normal(40, 10, n),
            "income(k)": rng.normal(50, 15, n),
            "visits": rng.integers(0, 10, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    frame.loc[::9, "age years"] = np.nan
    frame.loc[::13, "income(k)"] = np.nan
    score = (frame["income(k)"].fillna(50) - 50) / 15 + (frame["plan"] == "pro") - 0.2
    target = pd.Series(np.where(score > 0, "churn", "stay"), name="target")
    return frame, target
