"""ModelRuntime: JSON rows in, the native model's predictions out, bad rows refused precisely."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopml.core.errors import ArtifactIntegrityError, ValidationError
from loopml.serve import Columns, ModelRuntime, load_runtime
from tests.unit.conftest import Served, records


def _predict(runtime: ModelRuntime, rows: Any, max_rows: int | None = None) -> Any:
    return runtime.predict(runtime.columns_from_instances(rows, max_rows=max_rows))


@pytest.mark.parametrize("name", ["cancer", "wine", "mixed", "mixed_skops"])
def test_classifier_matches_native_model(name: str, request: pytest.FixtureRequest) -> None:
    served: Served = request.getfixturevalue(name)
    frame = served.frame.iloc[:60]

    prediction = _predict(served.runtime, records(frame))

    assert prediction.predictions.tolist() == served.native.predict(frame).tolist()
    assert prediction.probabilities is not None
    assert prediction.probabilities.shape == (60, len(served.native.classes_))
    np.testing.assert_allclose(
        prediction.probabilities, served.native.predict_proba(frame), atol=1e-4
    )
    assert served.runtime.classes == served.native.classes_.tolist()


def test_regressor_matches_native_model(diabetes: Served) -> None:
    frame = diabetes.frame.iloc[:80]

    prediction = _predict(diabetes.runtime, records(frame))

    assert prediction.probabilities is None
    assert prediction.predictions.dtype == np.float32
    np.testing.assert_allclose(prediction.predictions, diabetes.native.predict(frame), rtol=1e-4)


def test_skops_regressor_matches_native_model_exactly(skops_regressor: Served) -> None:
    frame = skops_regressor.frame.iloc[:80]

    prediction = _predict(skops_regressor.runtime, records(frame))

    assert prediction.predictions.dtype == np.float64
    np.testing.assert_allclose(
        prediction.predictions, skops_regressor.native.predict(frame), rtol=1e-12
    )


@pytest.mark.parametrize("name", ["mixed", "mixed_skops"])
def test_missing_values_where_the_signature_allows_them(
    name: str, request: pytest.FixtureRequest
) -> None:
    served: Served = request.getfixturevalue(name)
    frame = served.frame.iloc[:12].copy()
    frame.loc[frame.index[::2], "income(k)"] = np.nan
    frame.loc[frame.index[::3], "visits"] = np.nan
    frame["plan"] = frame["plan"].astype(object)
    frame.loc[frame.index[::4], "plan"] = None
    rows = records(frame)
    assert rows[0]["income(k)"] is None
    assert rows[0]["plan"] is None

    prediction = _predict(served.runtime, rows)

    assert prediction.predictions.tolist() == served.native.predict(frame).tolist()
    np.testing.assert_allclose(
        prediction.probabilities, served.native.predict_proba(frame), atol=1e-4
    )


def test_arrays_in_column_order_equal_records(mixed: Served) -> None:
    rows = mixed.records(slice(0, 10))
    arrays = [[row[name] for name in mixed.runtime.input_names] for row in rows]

    by_records = _predict(mixed.runtime, rows)
    by_arrays = _predict(mixed.runtime, arrays)

    assert by_arrays.predictions.tolist() == by_records.predictions.tolist()
    np.testing.assert_array_equal(by_arrays.probabilities, by_records.probabilities)


def test_integers_and_booleans_take_their_json_forms(mixed: Served) -> None:
    row = mixed.records(slice(0, 1))[0]
    as_numbers = {**row, "visits": float(row["visits"]), "active": int(row["active"])}

    same = _predict(mixed.runtime, [row, as_numbers])

    assert same.predictions[0] == same.predictions[1]
    np.testing.assert_array_equal(same.probabilities[0], same.probabilities[1])


def test_predict_many_is_one_model_call_with_per_request_answers(wine: Served) -> None:
    runtime = wine.runtime
    slices = [slice(0, 3), slice(10, 11), slice(40, 47)]
    parts = [runtime.columns_from_instances(wine.records(rows)) for rows in slices]
    alone = [runtime.predict(part) for part in parts]
    calls = runtime.model_calls

    together = runtime.predict_many(parts)

    assert runtime.model_calls == calls + 1
    assert [p.predictions.shape[0] for p in together] == [3, 1, 7]
    for single, batched in zip(alone, together, strict=True):
        assert batched.predictions.tolist() == single.predictions.tolist()
        np.testing.assert_allclose(batched.probabilities, single.probabilities, atol=1e-6)


def _cancer_row(cancer: Served, **changes: Any) -> dict[str, Any]:
    return {**cancer.records(slice(0, 1))[0], **changes}


def _refusal(runtime: ModelRuntime, rows: Any, max_rows: int | None = None) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        runtime.columns_from_instances(rows, max_rows=max_rows)
    assert caught.value.status == 422
    return caught.value


def test_missing_column_is_named(cancer: Served) -> None:
    rows = [{k: v for k, v in r.items() if k != "mean area"} for r in cancer.records(slice(0, 3))]

    error = _refusal(cancer.runtime, rows)

    assert "missing column(s) ['mean area']" in error.message
    assert error.details["missing"] == ["mean area"]


def test_column_missing_from_one_instance_names_the_instance(cancer: Served) -> None:
    rows = cancer.records(slice(0, 4))
    del rows[2]["worst area"]

    error = _refusal(cancer.runtime, rows)

    assert "instance 2 lacks column(s) ['worst area']" in error.message
    assert "send null for a missing value" in error.message
    assert error.details["row"] == 2


def test_unknown_column_is_named(cancer: Served) -> None:
    error = _refusal(cancer.runtime, [_cancer_row(cancer, customer_id=7)])

    assert error.message.startswith("unknown column(s) ['customer_id']")
    assert error.details["unknown"] == ["customer_id"]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("mean radius", "12.5", r"column 'mean radius' \(float\): row 1 has the string '12\.5'"),
        ("mean radius", True, r"column 'mean radius' \(float\): row 1 has true; expected a number"),
        ("mean radius", [1], r"column 'mean radius' \(float\): row 1 has an array"),
        ("mean radius", {"a": 1}, r"column 'mean radius' \(float\): row 1 has an object"),
        ("mean radius", 10**400, r"row 1 has 1000.*; the number is too large"),
    ],
    ids=["numeric-string", "boolean", "array", "object", "huge-integer"],
)
def test_wrong_type_names_column_and_first_offending_row(
    cancer: Served, column: str, value: Any, expected: str
) -> None:
    rows = cancer.records(slice(0, 3))
    rows[1][column] = value
    rows[2][column] = value

    error = _refusal(cancer.runtime, rows)

    assert re.search(expected, error.message), error.message
    assert error.details["column"] == column
    assert error.details["row"] == 1


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("visits", 2.5, r"column 'visits' \(integer\): row 0 has 2\.5; integers have no fraction"),
        ("active", None, r"column 'active' \(boolean\): row 0 has null; booleans cannot be"),
        ("active", 2, r"column 'active' \(boolean\): row 0 has 2; only true/false or 0/1"),
        ("active", "yes", r"column 'active' \(boolean\): row 0 has the string 'yes'"),
        ("plan", 3, r"column 'plan' \(string\): row 0 has 3; expected a string"),
    ],
)
def test_typed_columns_refuse_values_of_another_type(
    mixed: Served, column: str, value: Any, expected: str
) -> None:
    row = {**mixed.records(slice(0, 1))[0], column: value}

    error = _refusal(mixed.runtime, [row])

    assert re.search(expected, error.message), error.message


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        ({"mean radius": 1}, r'"instances" must be an array of records, got an object'),
        ("rows", r'"instances" must be an array of records, got a string'),
        ([], r"the request holds no instances"),
        ([{"mean radius": 1}, 5], r"instance 1 is a number; every instance must be an object"),
        ([[1.0, 2.0]], r"instance 0 has 2 values; the model takes 30 columns"),
    ],
)
def test_malformed_instances_are_refused(cancer: Served, instances: Any, expected: str) -> None:
    error = _refusal(cancer.runtime, instances)

    assert re.search(expected, error.message), error.message


def test_too_many_rows_are_refused_with_the_limit(cancer: Served) -> None:
    error = _refusal(cancer.runtime, cancer.records(slice(0, 11)), max_rows=10)

    assert "holds 11 instances, more than the limit of 10" in error.message
    assert error.details == {"rows": 11, "limit": 10}


def test_columns_from_values_checks_lengths(cancer: Served) -> None:
    values = {name: [1.0, 2.0] for name in cancer.runtime.input_names}
    values["mean area"] = [1.0]

    with pytest.raises(ValidationError, match="columns have different lengths"):
        cancer.runtime.columns_from_values(values)


def test_columns_are_typed_per_signature(mixed: Served) -> None:
    columns: Columns = mixed.runtime.columns_from_instances(mixed.records(slice(0, 4)))

    assert columns.rows == 4
    assert columns.arrays["age years"].dtype == np.float64
    assert columns.arrays["visits"].dtype == np.float64
    assert columns.arrays["active"].dtype == np.bool_
    assert columns.arrays["plan"].dtype == object
    assert list(columns.arrays["plan"]) == list(mixed.frame["plan"].iloc[:4])


def test_load_runtime_verifies_the_manifest_hash(cancer: Served) -> None:
    with pytest.raises(ArtifactIntegrityError, match="hash mismatch"):
        load_runtime(cancer.package.path, manifest_sha256="0" * 64)

    runtime = load_runtime(cancer.package.path, manifest_sha256=cancer.package.manifest_sha256)

    assert runtime.format == "onnx"
    assert runtime.platform == "onnxruntime_onnx"


def test_load_runtime_serves_skops_when_that_is_the_primary_format(
    skops_regressor: Served, tmp_path: Path
) -> None:
    package = skops_regressor.package
    runtime = load_runtime(package.path, manifest_sha256=package.manifest_sha256)

    assert runtime.format == "skops"
    assert runtime.platform == "sklearn_skops"
    frame = skops_regressor.frame.iloc[:5]
    prediction = runtime.predict(runtime.columns_from_instances(records(frame)))
    np.testing.assert_allclose(prediction.predictions, skops_regressor.native.predict(frame))


def test_native_model_refusing_a_row_is_a_validation_error(skops_regressor: Served) -> None:
    # The signature allows a missing float; this Ridge, without an imputer, does not.
    rows = skops_regressor.records(slice(0, 2))
    rows[1]["bmi"] = None
    runtime = skops_regressor.runtime
    columns = runtime.columns_from_instances(rows)

    with pytest.raises(
        ValidationError, match=r"the model cannot score these rows: .*NaN"
    ) as caught:
        runtime.predict(columns)

    assert caught.value.status == 422
