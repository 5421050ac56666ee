"""Small real models, packaged and loaded the way the server gets them: shared by the tests
of packaging (the runtime), serving, deployments and the prediction log.

Trained on scikit-learn's bundled datasets (no downloads) once per session: a binary and a
multiclass classifier, a regressor, a pipeline over a string category, a boolean and an
integer column with missing values, and a regressor that ONNX cannot express (served by
its skops copy).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before ONNX Runtime starts its thread pools: do not spin on a small, shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import pandas as pd
import pytest
from starlette.applications import Starlette

from loopml.packaging import ModelPackage, load_model, package_model
from loopml.serve import ModelRuntime, ModelServerSettings, PredictionSink, create_model_app

MODEL = "churn"
VERSION = 3
DEPLOYMENT = "churn-prod"


@dataclass
class Served:
    """A fitted model, its package, rows to ask about, and its runtime."""

    native: Any
    frame: pd.DataFrame
    package: ModelPackage
    runtime: ModelRuntime

    def records(self, rows: slice = slice(0, 5)) -> list[dict[str, Any]]:
        """Rows as JSON records (NaN as null), as a client would send them."""
        return records(self.frame.iloc[rows])


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: Python scalars, ``None`` for a missing value."""
    columns = {
        name: [None if _missing(v) else v for v in frame[name].tolist()] for name in frame.columns
    }
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _dataset(name: str) -> tuple[pd.DataFrame, pd.Series[Any]]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    return bunch.data, bunch.target


def _served(model: Any, frame: pd.DataFrame, dest: Path) -> Served:
    package = package_model(model, dest, sample=frame)
    loaded = load_model(package.path, manifest_sha256=package.manifest_sha256)
    return Served(model, frame, package, ModelRuntime(loaded))


@pytest.fixture(scope="session")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Binary classifier (integer classes 0/1), 30 float columns, served by ONNX Runtime."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = _dataset("breast_cancer")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, target)
    return _served(model, frame, tmp_path_factory.mktemp("cancer") / "pkg")


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Three-class classifier, served by ONNX Runtime."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = _dataset("wine")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, target)
    return _served(model, frame, tmp_path_factory.mktemp("wine") / "pkg")


@pytest.fixture(scope="session")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Regressor, served by ONNX Runtime (float32 values)."""
    from sklearn.linear_model import Ridge

    frame, target = _dataset("diabetes")
    return _served(Ridge().fit(frame, target), frame, tmp_path_factory.mktemp("diabetes") / "pkg")


@pytest.fixture(scope="session")
def skops_regressor(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A regressor ONNX cannot express (a FunctionTransformer), so its package serves skops."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame, target = _dataset("diabetes")
    model = make_pipeline(FunctionTransformer(np.abs), Ridge()).fit(frame, target)
    served = _served(model, frame, tmp_path_factory.mktemp("skops") / "pkg")
    assert served.runtime.format == "skops"
    return served


def mixed_frame() -> tuple[pd.DataFrame, pd.Series[Any]]:
    """Floats with NaNs, an integer, a string category and a boolean; string classes."""
    rng = np.random.default_rng(7)
    n = 300
    frame = pd.DataFrame(
        {
            "age years": rng.normal(40, 10, n),
            "income(k)": rng.normal(50, 15, n),
            "visits": rng.integers(0, 10, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "active": rng.random(n) > 0.5,
        }
    )
    frame.loc[::9, "age years"] = np.nan
    score = (frame["income(k)"].fillna(50) - 50) / 15 + (frame["plan"] == "pro") - 0.2
    score += frame["active"] * 0.5
    return frame, pd.Series(np.where(score > 0, "churn", "stay"), name="target")


def _mixed_model() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer(
        [
            ("num", numeric, ["age years", "income(k)", "visits"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("flag", "passthrough", ["active"]),
        ]
    )
    frame, target = mixed_frame()
    return Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, target)


@pytest.fixture(scope="session")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Pipeline over float/integer/string/boolean columns, string classes, ONNX Runtime."""
    frame, _ = mixed_frame()
    served = _served(_mixed_model(), frame, tmp_path_factory.mktemp("mixed") / "pkg")
    assert served.runtime.format == "onnx", served.package.manifest.onnx_error
    return served


@pytest.fixture(scope="session")
def mixed_skops(mixed: Served) -> Served:
    """The same mixed pipeline, served by its skops copy."""
    loaded = load_model(
        mixed.package.path, manifest_sha256=mixed.package.manifest_sha256, prefer="skops"
    )
    return Served(mixed.native, mixed.frame, mixed.package, ModelRuntime(loaded))


def make_app(served: Served, sink: PredictionSink | None = None, **settings: Any) -> Starlette:
    return create_model_app(
        served.runtime,
        deployment=DEPLOYMENT,
        model_name=MODEL,
        version=VERSION,
        sink=sink,
        settings=ModelServerSettings(**settings),
    )
