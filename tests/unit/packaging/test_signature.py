"""A loaded model checks and casts its inputs against the signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from loopml.core.errors import ValidationError
from loopml.packaging import LoadedModel, Signature, infer_signature, load_model, package_model
from tests.unit.packaging._helpers import iris_package
from tests.unit.packaging.conftest import frame_and_target


@pytest.fixture(scope="module", params=["onnx", "skops"])
def iris_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> LoadedModel:
    package = iris_package(tmp_path_factory.mktemp("sig") / "pkg")
    return load_model(package.path, prefer=request.param)


def test_missing_column_lists_expected_and_got(iris_model: LoadedModel) -> None:
    frame, _ = frame_and_target("iris")
    with pytest.raises(ValidationError, match=r"missing input columns \['petal width \(cm\)'\]"):
        iris_model.predict(frame.drop(columns=["petal width (cm)"]))


def test_extra_columns_are_ignored_and_order_does_not_matter(iris_model: LoadedModel) -> None:
    frame, target = frame_and_target("iris")
    shuffled = frame[frame.columns[::-1]].assign(target=target, note="x")
    np.testing.assert_array_equal(iris_model.predict(shuffled), iris_model.predict(frame))


def test_castable_values_are_cast(iris_model: LoadedModel) -> None:
    frame, _ = frame_and_target("iris")
    as_text = frame.astype(str)
    np.testing.assert_allclose(
        iris_model.predict_proba(as_text), iris_model.predict_proba(frame), atol=1e-6
    )


def test_uncastable_value_is_refused(iris_model: LoadedModel) -> None:
    frame, _ = frame_and_target("iris")
    bad = frame.astype(object)
    bad.loc[3, "sepal width (cm)"] = "wide"
    with pytest.raises(ValidationError, match=r"'sepal width \(cm\)' must be float"):
        iris_model.predict(bad)


def test_predict_proba_on_a_regressor_is_refused(tmp_path: Path) -> None:
    frame, target = frame_and_target("diabetes")
    package = package_model(Ridge().fit(frame, target), tmp_path / "pkg", sample=frame)
    with pytest.raises(ValidationError, match="regressor"):
        load_model(package.path).predict_proba(frame)


def test_infer_uses_the_model_columns_not_the_target(tmp_path: Path) -> None:
    frame, target = frame_and_target("diabetes")
    model = Ridge().fit(frame, target)
    signature = infer_signature(model, frame.assign(target=target))
    assert [c.name for c in signature.inputs] == list(frame.columns)
    assert signature.outputs[0].name == "prediction"
    assert signature.classes is None


def test_integer_column_refuses_fractions() -> None:
    import pandas as pd

    from loopml.packaging._signature import prepare_frame

    signature = Signature.model_validate(
        {
            "inputs": [{"name": "n", "type": "integer"}],
            "outputs": [{"name": "prediction", "type": "float"}],
            "task": "regression",
        }
    )
    assert prepare_frame(pd.DataFrame({"n": ["1", "2"]}), signature)["n"].dtype == np.int64
    with pytest.raises(ValidationError, match="must be integer"):
        prepare_frame(pd.DataFrame({"n": [1.5]}), signature)
