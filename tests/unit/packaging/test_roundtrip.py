"""Package → load → predict, for every supported model kind, against the native model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from loopml.core.errors import ConflictError, ValidationError
from loopml.packaging import MANIFEST_FILE, load_model, package_model
from tests.unit.packaging.conftest import frame_and_target

Factory = Callable[[], Any]

CLASSIFIERS: list[tuple[str, Factory]] = [
    ("breast_cancer", lambda: make_pipeline(StandardScaler(), LogisticRegression())),
    ("wine", lambda: RandomForestClassifier(n_estimators=10, n_jobs=1, random_state=0)),
    ("iris", lambda: ExtraTreesClassifier(n_estimators=10, n_jobs=1, random_state=0)),
    ("breast_cancer", lambda: GradientBoostingClassifier(n_estimators=10, random_state=0)),
    ("wine", lambda: _lgbm_classifier()),
]
REGRESSORS: list[tuple[str, Factory]] = [
    ("diabetes", Ridge),
    ("diabetes", LinearRegression),
    ("diabetes", lambda: RandomForestRegressor(n_estimators=10, n_jobs=1, random_state=0)),
    ("diabetes", lambda: ExtraTreesRegressor(n_estimators=10, n_jobs=1, random_state=0)),
    ("diabetes", lambda: GradientBoostingRegressor(n_estimators=20, random_state=0)),
    ("diabetes", lambda: _lgbm_regressor()),
]


def _lgbm_classifier() -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=10, n_jobs=1, verbose=-1, random_state=0)


def _lgbm_regressor() -> Any:
    from lightgbm import LGBMRegressor

    return LGBMRegressor(n_estimators=20, n_jobs=1, verbose=-1, random_state=0)


def _ids(cases: list[tuple[str, Factory]]) -> list[str]:
    return [f"{data}-{type(factory()).__name__}" for data, factory in cases]


@pytest.mark.parametrize(("data", "factory"), CLASSIFIERS, ids=_ids(CLASSIFIERS))
def test_classifier_exports_to_onnx_and_loads_back(
    data: str, factory: Factory, tmp_path: Path
) -> None:
    frame, target = frame_and_target(data)
    model = factory().fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    assert package.manifest.primary == "onnx", package.manifest.onnx_error
    assert package.manifest.parity is not None
    assert package.manifest.parity.passed
    assert package.manifest.signature.classes == [int(c) for c in model.classes_]
    loaded = load_model(package.path, manifest_sha256=package.manifest_sha256)
    assert loaded.format == "onnx"
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), atol=1e-4)
    assert np.mean(loaded.predict(frame) == model.predict(frame)) > 0.99


@pytest.mark.parametrize(("data", "factory"), REGRESSORS, ids=_ids(REGRESSORS))
def test_regressor_exports_to_onnx_and_loads_back(
    data: str, factory: Factory, tmp_path: Path
) -> None:
    frame, target = frame_and_target(data)
    model = factory().fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    assert package.manifest.primary == "onnx", package.manifest.onnx_error
    assert package.manifest.signature.task == "regression"
    loaded = load_model(package.path, manifest_sha256=package.manifest_sha256)
    np.testing.assert_allclose(loaded.predict(frame), model.predict(frame), rtol=1e-4)


def _mixed_pipeline(final: Any) -> Pipeline:
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer(
        [
            ("num", numeric, ["age years", "income(k)", "visits"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", final)])


@pytest.mark.parametrize("final", ["logistic", "lightgbm"])
def test_column_transformer_over_mixed_types(
    final: str, mixed_frame: tuple[pd.DataFrame, Any], tmp_path: Path
) -> None:
    frame, target = mixed_frame
    estimator = LogisticRegression() if final == "logistic" else _lgbm_classifier()
    model = _mixed_pipeline(estimator).fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    manifest = package.manifest
    assert manifest.primary == "onnx", manifest.onnx_error
    # The flavor names the library of the final estimator, the one loading needs.
    assert manifest.flavor == ("lightgbm" if final == "lightgbm" else "sklearn")
    assert [(c.name, c.type) for c in manifest.signature.inputs] == [
        ("age years", "float"),
        ("income(k)", "float"),
        ("visits", "integer"),
        ("plan", "string"),
    ]
    assert manifest.signature.classes == ["churn", "stay"]
    loaded = load_model(package.path)
    assert list(loaded.predict(frame)) == list(model.predict(frame))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame), atol=1e-4)


def test_lightgbm_flavor_is_recorded(tmp_path: Path) -> None:
    frame, target = frame_and_target("breast_cancer")
    model = _lgbm_classifier().fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    assert package.manifest.flavor == "lightgbm"
    assert "lightgbm.basic.Booster" in package.manifest.trusted_types
    skops = load_model(package.path, prefer="skops")
    np.testing.assert_array_equal(skops.predict(frame), model.predict(frame))


def test_model_onnx_cannot_express_falls_back_to_skops(tmp_path: Path) -> None:
    frame, target = frame_and_target("diabetes")
    # skl2onnx converts FunctionTransformer only without a function.
    model = make_pipeline(FunctionTransformer(np.abs), Ridge()).fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    assert package.manifest.primary == "skops"
    assert package.manifest.parity is None
    assert package.manifest.onnx_error
    assert "model.onnx" not in package.manifest.files
    loaded = load_model(package.path, manifest_sha256=package.manifest_sha256)
    assert loaded.format == "skops"
    np.testing.assert_allclose(loaded.predict(frame), model.predict(frame), rtol=1e-12)
    with pytest.raises(Exception, match=r"no model\.onnx"):
        load_model(package.path, prefer="onnx")


def test_failed_parity_makes_skops_primary(tmp_path: Path) -> None:
    frame, target = frame_and_target("iris")
    model = LogisticRegression(max_iter=1000).fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame, tolerance=0.0)

    parity = package.manifest.parity
    assert parity is not None
    assert not parity.passed
    assert parity.max_abs_diff > 0
    assert package.manifest.primary == "skops"
    assert load_model(package.path).format == "skops"
    assert load_model(package.path, prefer="onnx").format == "onnx"


def test_hist_gradient_boosting_packages_either_way(tmp_path: Path) -> None:
    # skl2onnx 1.20 fails on HistGradientBoosting with onnx 1.23; whichever format wins,
    # the package must load and predict like the model.
    frame, target = frame_and_target("breast_cancer")
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(frame, target)

    package = package_model(model, tmp_path / "pkg", sample=frame)

    assert (package.manifest.primary == "onnx") == (package.manifest.onnx_error is None)
    loaded = load_model(package.path, manifest_sha256=package.manifest_sha256)
    assert np.mean(loaded.predict(frame) == model.predict(frame)) > 0.99


def test_input_example_holds_first_rows(tmp_path: Path) -> None:
    frame, target = frame_and_target("iris")
    package = package_model(
        LogisticRegression(max_iter=1000).fit(frame, target), tmp_path / "p", sample=frame
    )

    example = pd.read_json(package.path / "input_example.json", orient="records")

    assert list(example.columns) == list(frame.columns)
    assert len(example) == 5


def test_the_sample_keeps_up_to_1000_rows_drawn_across_the_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": np.arange(3000.0), "c": rng.choice(["a", "b"], 3000)})
    frame = frame.sort_values("x")  # a sorted sample must not be cut to its first rows
    model = make_pipeline(
        ColumnTransformer([("x", "passthrough", ["x"]), ("c", OneHotEncoder(), ["c"])]),
        LogisticRegression(max_iter=1000),
    ).fit(frame, frame["x"] > 1500)
    package = package_model(model, tmp_path / "p", sample=frame)
    assert "sample.parquet" in package.manifest.files
    sample = load_model(package.path, manifest_sha256=package.manifest_sha256).sample()
    assert sample is not None
    assert list(sample.columns) == ["x", "c"]
    assert len(sample) == 1000
    assert sample["x"].max() > 2500  # drawn from the whole frame
    assert set(sample["c"]) == {"a", "b"}

    small = package_model(model, tmp_path / "q", sample=frame.head(40))
    again = load_model(small.path).sample()
    assert again is not None
    assert sorted(again["x"]) == list(frame["x"].head(40))


def test_same_model_gives_same_onnx_and_example_hashes(tmp_path: Path) -> None:
    frame, target = frame_and_target("wine")
    model = RandomForestClassifier(n_estimators=5, n_jobs=1, random_state=0).fit(frame, target)

    first = package_model(model, tmp_path / "a", sample=frame).manifest
    second = package_model(model, tmp_path / "b", sample=frame).manifest

    # skops zips carry write times and id()-based member names, so model.skops is not
    # byte-stable; ONNX bytes and the input example are.
    for name in ("model.onnx", "input_example.json", "sample.parquet"):
        assert first.files[name] == second.files[name]
    assert first.signature == second.signature


def test_unsupported_model_type_is_refused(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans

    frame, _ = frame_and_target("iris")
    with pytest.raises(ValidationError, match=r"KMeans.*scikit-learn classifiers and regressors"):
        package_model(KMeans(n_clusters=2, n_init=1).fit(frame), tmp_path / "p", sample=frame)
    with pytest.raises(ValidationError, match="dict"):
        package_model({"not": "a model"}, tmp_path / "p", sample=frame)
    assert not (tmp_path / "p").exists()


def test_unfitted_model_is_refused(tmp_path: Path) -> None:
    frame, _ = frame_and_target("iris")
    with pytest.raises(ValidationError, match="not fitted"):
        package_model(LogisticRegression(), tmp_path / "p", sample=frame)


def test_destination_must_be_empty(tmp_path: Path) -> None:
    frame, target = frame_and_target("iris")
    model = LogisticRegression(max_iter=1000).fit(frame, target)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "other.txt").write_text("x")

    with pytest.raises(ConflictError, match="empty folder"):
        package_model(model, tmp_path / "p", sample=frame)
    assert not (tmp_path / "p" / MANIFEST_FILE).exists()
