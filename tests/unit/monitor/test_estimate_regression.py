"""The regressors' estimate before labels, over real prediction logs: a real regressor served
by its model server, its reference's error table measured on eval rows, the monitor's
rounds summing each row's expected errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loopml.client import Client
from loopml.core.alerts import metric_value
from loopml.monitor.error_table import MIN_ROWS, error_table
from loopml.monitor.estimate import ERROR_METHOD, estimate_of, estimate_summary, merge_estimate
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.packaging import load_model, package_model
from loopml.serve import ModelRuntime
from loopml.settings import Settings
from tests.unit.api.test_feedback import make_deployment
from tests.unit.monitor.test_engine import (
    _monitor,
    _rendered,
    _windows,
    running,
    serve_rows,
    settings,  # noqa: F401 (a fixture)
)


def _frame(rng: np.random.Generator, rows: int, shift_a: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(shift_a, 1, rows), "b": rng.normal(0, 1, rows)})


def _labels(rng: np.random.Generator, frame: pd.DataFrame) -> np.ndarray:
    """The truth: linear in ``a`` and ``b``, its noise growing with ``a`` (so with the
    prediction): a model errs more where it predicts high."""
    a, b = frame["a"].to_numpy(), frame["b"].to_numpy()
    noise = rng.normal(0, 1, len(a)) * (0.2 + np.maximum(a, 0))
    return np.asarray(3 * a - b + noise)


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRuntime, Reference]:
    """A linear regressor, and its reference: the training rows' profile and the error table
    of 2,000 eval rows."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    train = _frame(rng, 3000)
    fitted = LinearRegression().fit(train, _labels(rng, train))
    package = package_model(fitted, tmp_path_factory.mktemp("regressor"), sample=train)
    runtime = ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))
    held = _frame(rng, 2000)
    profile = profile_table(
        pa.Table.from_pandas(train),
        {"a": "numeric", "b": "numeric"},
        task="regression",
        predictions=fitted.predict(train),
        errors=error_table(fitted.predict(held), _labels(rng, held)),
    )
    return runtime, Reference(status="ready", source="test training rows", profile=profile)


def _actual(answers: list[dict[str, object]], truth: np.ndarray) -> tuple[float, float]:
    predicted = np.array([float(p) for a in answers for p in a["predictions"]])  # type: ignore[attr-defined]
    missed = truth - predicted
    return float(np.abs(missed).mean()), float(np.sqrt((missed**2).mean()))


def test_the_estimate_follows_the_errors_before_labels_come_back(
    settings: Settings,  # noqa: F811
    regressor: tuple[ModelRuntime, Reference],
) -> None:
    runtime, reference = regressor
    rng = np.random.default_rng(5)
    calm, moved = _frame(rng, 1000), _frame(rng, 1000, shift_a=1.0)
    calm_truth, moved_truth = _labels(rng, calm), _labels(rng, moved)
    with running(settings) as (url, ctx), Client(url) as client:
        make_deployment(ctx, "calm-api")
        make_deployment(ctx, "moved-api")
        save_reference(ctx.store, "default", "churn", 1, reference)
        calm_answers = serve_rows(url, runtime, "calm-api", calm, batch=100)
        moved_answers = serve_rows(url, runtime, "moved-api", moved, batch=100)
        _monitor(ctx, settings).tick()
        [calm_window] = _windows(client, "calm-api", "1d")
        [moved_window] = _windows(client, "moved-api", "1d")
        view = client.monitoring.view("moved-api", window="1d")
    calm_est = calm_window["summary"]["quality"]["estimated"]
    moved_est = moved_window["summary"]["quality"]["estimated"]
    assert calm_window["summary"]["quality"]["labels"] == 0  # only the estimate is known
    assert (calm_est["method"], calm_est["rows"]) == (ERROR_METHOD, 1000)
    assert reference.profile is not None
    assert reference.profile.errors is not None
    assert calm_est["eval_mae"] == reference.profile.errors.mae
    mae, rmse = _actual(calm_answers, calm_truth)
    assert abs(calm_est["mae"] - mae) / mae < 0.1, (calm_est, mae)
    assert abs(calm_est["rmse"] - rmse) / rmse < 0.12, (calm_est, rmse)
    # Inputs moved to where the model errs more: the estimate rises with the errors, short
    # of them where predictions pass the eval set's range (the end bins hold there).
    moved_mae, _ = _actual(moved_answers, moved_truth)
    assert moved_mae > 1.6 * mae
    assert moved_est["mae"] > 1.6 * calm_est["mae"]
    assert abs(moved_est["mae"] - moved_mae) / moved_mae < 0.25, (moved_est, moved_mae)
    assert metric_value(moved_window["summary"], "estimated_mae") == moved_est["mae"]
    assert f"estimated quality (before labels, {ERROR_METHOD}, 1000 rows)" in _rendered(view)


def test_the_error_table_bins_by_prediction_and_pieces_still_add() -> None:
    rng = np.random.default_rng(3)
    predictions = np.repeat(np.arange(20.0), 10)  # 20 distinct values, 10 rows each
    labels = predictions + rng.normal(0, 1, 200) * (predictions / 10)
    table = error_table(predictions, labels)

    assert table is not None
    assert table.rows == 200
    assert sum(b.rows for b in table.bins) == 200
    # Equal counts, and a run of equal predictions is never split between two bins.
    assert all(b.rows % 10 == 0 for b in table.bins)
    assert all(a.upper < b.lower for a, b in zip(table.bins, table.bins[1:], strict=False))
    assert table.bins[-1].abs_error > 5 * table.bins[0].abs_error
    absolute, _ = table.expected(np.array([-100.0, 100.0]))  # beyond the ends: the end bins
    assert absolute.tolist() == [table.bins[0].abs_error, table.bins[-1].abs_error]
    assert error_table(predictions[: MIN_ROWS - 1], labels[: MIN_ROWS - 1]) is None

    rows = pa.table({"prediction_value": rng.uniform(0, 19, 300)})
    whole = estimate_summary(estimate_of(rows, errors=table), errors=table)
    halves = estimate_summary(
        merge_estimate(
            estimate_of(rows.slice(0, 120), errors=table),
            estimate_of(rows.slice(120), errors=table),
        ),
        errors=table,
    )
    assert whole is not None
    assert halves is not None
    assert whole["rows"] == halves["rows"] == 300
    assert abs(whole["mae"] - halves["mae"]) < 1e-12
    assert abs(whole["rmse"] - halves["rmse"]) < 1e-12
