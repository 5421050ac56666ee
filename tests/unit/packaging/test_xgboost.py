"""XGBoost models package as ONNX with parity, and as skops trusting exactly its classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from loopml.core.errors import UnsafeArtifactError
from loopml.packaging import load_model, package_model
from tests.unit.packaging._helpers import forge_manifest

xgboost = pytest.importorskip("xgboost")

_TRUSTED = ["xgboost.core.Booster"]


def _frame(rows: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "size m2": rng.normal(80, 20, rows),
            "rooms": rng.integers(1, 6, rows),
            "age": rng.normal(30, 12, rows),
            "noise": rng.normal(0, 1, rows),
        }
    )
    # Missing values take XGBoost's default branch; the ONNX graph must take the same one.
    frame.loc[::11, "age"] = np.nan
    return frame


def _target(frame: pd.DataFrame, task: str) -> pd.Series[Any]:
    value = frame["size m2"] / 20 + frame["rooms"] - frame["age"].fillna(30) / 15
    if task == "regression":
        return value * 1000
    edges = [-np.inf, value.median(), np.inf] if task == "binary" else value.quantile([0.33, 0.66])
    if task == "binary":
        return pd.Series(pd.cut(value, edges, labels=False), dtype="int64")
    return pd.Series(np.digitize(value, np.asarray(edges)), dtype="int64")


def _model(task: str) -> Any:
    # The library defaults (100 trees of depth 6), as AutoML's first trial fits them.
    if task == "regression":
        return xgboost.XGBRegressor(n_jobs=1, random_state=0)
    return xgboost.XGBClassifier(n_jobs=1, random_state=0)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_default_xgboost_packages_as_onnx_with_parity(task: str, tmp_path: Path) -> None:
    frame = _frame()
    model = _model(task).fit(frame, _target(frame, task))

    package = package_model(model, tmp_path / "pkg", sample=frame)

    manifest = package.manifest
    assert manifest.primary == "onnx", manifest.onnx_error
    assert manifest.parity is not None
    assert manifest.parity.passed
    assert manifest.flavor == "xgboost"
    assert set(manifest.trusted_types) <= {*_TRUSTED, f"xgboost.sklearn.{type(model).__name__}"}
    onnx = load_model(package.path, manifest_sha256=package.manifest_sha256)
    skops = load_model(package.path, prefer="skops")
    assert onnx.format == "onnx"
    assert skops.format == "skops"
    np.testing.assert_array_equal(skops.predict(frame), model.predict(frame))
    if task == "regression":
        np.testing.assert_allclose(onnx.predict(frame), model.predict(frame), rtol=1e-4)
        return
    assert manifest.signature.classes == [int(c) for c in model.classes_]
    np.testing.assert_allclose(onnx.predict_proba(frame), model.predict_proba(frame), atol=1e-4)
    assert np.mean(onnx.predict(frame) == model.predict(frame)) > 0.99


def test_xgboost_after_a_column_transformer(tmp_path: Path) -> None:
    frame = _frame()
    frame["plan"] = np.random.default_rng(5).choice(["basic", "plus", "pro"], len(frame))
    target = _target(frame, "multiclass")
    columns = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), ["size m2", "rooms", "age", "noise"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    model = Pipeline([("columns", columns), ("model", _model("multiclass"))]).fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    assert package.manifest.primary == "onnx", package.manifest.onnx_error
    loaded = load_model(package.path)
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), atol=1e-4)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("xgboost.core.DMatrix", "not from"),
        ("xgboost.sklearn.XGBRFRegressor", "not from"),
        ("xgboost.Booster", "not from"),
    ],
)
def test_only_named_xgboost_classes_are_trusted(name: str, reason: str, tmp_path: Path) -> None:
    frame = _frame()
    model = _model("regression").fit(frame, _target(frame, "regression"))
    package = package_model(model, tmp_path / "pkg", sample=frame)
    sha = forge_manifest(package.path, trusted_types=[*_TRUSTED, name], primary="skops")

    with pytest.raises(UnsafeArtifactError, match=reason):
        load_model(package.path, manifest_sha256=sha)
