"""A date column becomes calendar features: planned, trained on, packaged as a ``datetime``
signature column, and served from callers' ISO-8601 strings with the native predictions."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from loopml.packaging import ModelPackage, dates, load_model, package_model
from loopml.packaging.runtime import ModelRuntime
from loopml.scoring._chunks import ChunkScorer
from loopml.train.automl import AutoMLResult, run_automl
from loopml.train.automl._preprocess import plan_columns, training_frame
from tests.unit.conftest import MODEL, Served, make_app


def test_the_plan_turns_date_columns_into_calendar_numbers() -> None:
    n = 24
    # ``booked`` is unique per row, as an identifier would be (a text one is left out).
    booked = [date(2024, 5, 1) + timedelta(days=d) for d in range(n - 1)] + [None]
    frame = pd.DataFrame(
        {
            "day": pd.date_range("2024-01-30", periods=n, freq="D"),
            "stamp": pd.date_range("2024-01-30 22:00", periods=n, freq="h", tz="Europe/Paris"),
            "booked": pd.Series(booked, dtype=object),
            "wait": pd.to_timedelta(np.arange(n), unit="h"),
            "x": np.arange(n, dtype=float),
        }
    )

    plan = plan_columns(frame)

    no_hour = [p for p in dates.PARTS if p != "hour"]
    assert plan.dates == {"day": no_hour, "stamp": list(dates.PARTS), "booked": no_hour}
    assert "wait" in plan.dropped
    assert plan.used(list(frame.columns)) == ["day", "stamp", "booked", "x"]
    trained = training_frame(frame, plan)
    assert list(trained.columns)[:3] == ["day.year", "day.month", "day.day"]
    assert list(trained.columns)[-1] == "x"
    # A zoned time counts in UTC: 22:00 in Paris is 21:00 UTC.
    assert trained["stamp.hour"].tolist()[:6] == [21, 22, 23, 0, 1, 2]
    assert trained["stamp.day"].tolist()[:6] == [30, 30, 30, 31, 31, 31]
    assert trained["booked.month"].iloc[0] == 5
    assert np.isnan(trained["booked.month"].iloc[-1])


def _frame(n: int = 500) -> pd.DataFrame:
    """``busy`` is yes in summer months only: the signal is in the date's month."""
    rng = np.random.default_rng(7)
    when = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, n), unit="D")
    frame = pd.DataFrame({"when": when, "x": rng.normal(size=n)})
    frame["busy"] = np.where(frame["when"].dt.month.isin([6, 7, 8]), "yes", "no")
    frame.loc[::25, "when"] = pd.NaT
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[AutoMLResult, ModelPackage]:
    frame = _frame()
    result = run_automl(
        frame, "busy", task="classification", estimators=["lgbm"], budget_s=5, max_iter=3
    )
    dest = tmp_path_factory.mktemp("dates") / "pkg"
    return result, package_model(result.model, dest, sample=frame.drop(columns="busy"))


def _iso_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {"when": None if pd.isna(w) else w.strftime("%Y-%m-%d"), "x": float(x)}
        for w, x in zip(frame["when"], frame["x"], strict=True)
    ]


def _native(result: AutoMLResult, frame: pd.DataFrame, signature: Any) -> np.ndarray:
    return np.asarray(result.model.predict_proba(dates.expand_frame(frame, signature)))


def test_automl_trains_on_the_month_and_the_package_serves_iso_dates(
    trained: tuple[AutoMLResult, ModelPackage],
) -> None:
    result, package = trained
    manifest = package.manifest
    features = _frame().drop(columns="busy")

    assert result.used_columns == ["when", "x"]
    assert result.dropped_columns == {}
    assert result.best_score > 0.9, result.best_score  # the month is learnt
    assert [(c.name, c.type) for c in manifest.signature.inputs] == [
        ("when", "datetime"),
        ("x", "float"),
    ]
    assert manifest.primary == "onnx", manifest.onnx_error
    assert manifest.parity is not None
    assert manifest.parity.passed
    runtime = ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))
    rows = _iso_rows(features.iloc[:60])

    answer = runtime.predict(runtime.columns_from_instances(rows))

    native = _native(result, features.iloc[:60], manifest.signature)
    assert answer.probabilities is not None
    np.testing.assert_allclose(answer.probabilities, native, atol=1e-4)
    assert list(answer.predictions) == list(np.asarray(result.classes)[native.argmax(axis=1)])


def test_the_model_server_and_batch_scoring_take_dates(
    trained: tuple[AutoMLResult, ModelPackage],
) -> None:
    result, package = trained
    features = _frame().drop(columns="busy").iloc[:20]
    runtime = ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))
    native = _native(result, features, package.manifest.signature)
    served = Served(result.model, features, package, runtime)

    rows = _iso_rows(features)
    tensors = [
        {"name": "when", "shape": [20], "datatype": "BYTES", "data": [r["when"] for r in rows]},
        {"name": "x", "shape": [20], "datatype": "FP64", "data": [r["x"] for r in rows]},
    ]

    with TestClient(make_app(served), base_url="http://127.0.0.1") as client:
        good = client.post("/predict", json={"instances": rows})
        bad = client.post("/predict", json={"instances": [{"when": "June", "x": 1.0}]})
        v2 = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": tensors})

    assert good.status_code == 200, good.text
    np.testing.assert_allclose(good.json()["probabilities"], native, atol=1e-4)
    assert v2.status_code == 200, v2.text
    proba = next(o for o in v2.json()["outputs"] if o["name"] == "predict_proba")
    np.testing.assert_allclose(np.reshape(proba["data"], (20, -1)), native, atol=1e-4)
    assert bad.status_code == 422
    assert "column 'when' (datetime): row 0 has the string 'June'" in bad.json()["error"]["message"]
    # Batch scoring reads an Arrow timestamp column (zoned here) without strings.
    zoned = features["when"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    table = pa.Table.from_pandas(features.assign(when=zoned), preserve_index=False)
    scorer = ChunkScorer(runtime, table.schema)
    scored = scorer.score(table.to_batches()[0], 0)
    probabilities = np.array(scored.column("probabilities").to_pylist())
    np.testing.assert_allclose(probabilities, native, atol=1e-4)


def test_a_loaded_package_takes_a_frame_of_dates_or_strings(
    trained: tuple[AutoMLResult, ModelPackage], tmp_path: Path
) -> None:
    result, package = trained
    features = _frame().drop(columns="busy").iloc[:30]
    native = _native(result, features, package.manifest.signature)
    as_text = features.assign(when=features["when"].dt.strftime("%Y-%m-%dT%H:%M:%S"))

    for prefer in ("onnx", "skops"):
        loaded = load_model(package.path, prefer=prefer)
        np.testing.assert_allclose(loaded.predict_proba(features), native, atol=1e-4)
        np.testing.assert_allclose(loaded.predict_proba(as_text), native, atol=1e-4)


def test_a_text_column_of_iso_dates_is_planned_as_dates() -> None:
    n = 12
    days = [f"2024-05-{d:02d}" for d in range(1, n)] + [None]
    frame = pd.DataFrame(
        {
            "day": pd.Series(days, dtype=object),
            "stamp": [f"2024-05-{d:02d}T14:30:00+02:00" for d in range(1, n + 1)],
            "typed": pd.Series(days, dtype="string"),
            # One value of another form keeps a column text (the server would refuse it).
            "almost": [*days[:-1], "soon"],
            "code": [f"202405{d:02d}" for d in range(1, n + 1)],  # a number, not a date
            "month": [f"2024-{m:02d}" for m in range(1, n + 1)],  # a year and month
            "bad": [f"2024-13-{d:02d}" for d in range(1, n + 1)],  # no 13th month
            "x": np.arange(n, dtype=float),
        }
    )

    plan = plan_columns(frame)

    no_hour = [p for p in dates.PARTS if p != "hour"]
    assert plan.dates == {"day": no_hour, "stamp": list(dates.PARTS), "typed": no_hour}
    assert set(plan.categories) | set(plan.dropped) == {"almost", "code", "month", "bad"}
    trained = training_frame(frame, plan)
    assert trained["day.day"].tolist()[:3] == [1, 2, 3]
    assert np.isnan(trained["day.day"].iloc[-1])
    assert trained["typed.day"].tolist()[:3] == [1, 2, 3]
    # 14:30 at +02:00 is 12:30 UTC.
    assert trained["stamp.hour"].tolist()[:2] == [12, 12]


def test_automl_trains_on_iso_date_text_and_the_package_serves_it(tmp_path: Path) -> None:
    frame = _frame()
    text = frame.assign(when=frame["when"].dt.strftime("%Y-%m-%d").astype(object))
    text.loc[frame["when"].isna(), "when"] = None

    result = run_automl(
        text, "busy", task="classification", estimators=["lgbm"], budget_s=5, max_iter=3
    )
    package = package_model(result.model, tmp_path / "pkg", sample=text.drop(columns="busy"))

    assert result.used_columns == ["when", "x"]
    assert result.best_score > 0.9, result.best_score  # the month is learnt from the text
    inputs = package.manifest.signature.inputs
    assert [(c.name, c.type) for c in inputs] == [("when", "datetime"), ("x", "float")]
    assert package.manifest.primary == "onnx", package.manifest.onnx_error
    runtime = ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))
    rows = _iso_rows(frame.drop(columns="busy").iloc[:40])
    answer = runtime.predict(runtime.columns_from_instances(rows))
    native = _native(result, text.drop(columns="busy").iloc[:40], package.manifest.signature)
    assert answer.probabilities is not None
    np.testing.assert_allclose(answer.probabilities, native, atol=1e-4)
