"""The CBPE estimate before labels, over real prediction logs: a real classifier's
probabilities logged by its model server, read by the monitor's rounds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from loopml.client import Client
from loopml.core.alerts import metric_value
from loopml.faces.context import AppContext
from loopml.monitor.calibration import calibration_table
from loopml.monitor.reference import Reference
from loopml.monitor.reference_store import save_reference
from loopml.serve import ModelRuntime
from loopml.settings import Settings
from loopml.store import monitor as monitor_rows
from tests.unit.api.test_feedback import make_deployment
from tests.unit.monitor.test_engine import (
    _frame,
    _monitor,
    _rendered,
    _windows,
    model,  # noqa: F401 (a fixture)
    running,
    serve_rows,
    settings,  # noqa: F401 (a fixture)
)


def _labelled(rng: np.random.Generator, rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows from the training distribution and their true labels (the training rule)."""
    frame = _frame(rng, rows)
    labels = (frame["a"] + frame["b"] + rng.normal(0, 0.5, rows) > 0).astype(int)
    return frame, labels.to_numpy()


def _save_without_calibration(ctx: AppContext, reference: Reference) -> None:
    """Store ``reference`` as profiles were stored before they had a calibration table."""
    assert reference.profile is not None
    profile = reference.profile.model_dump()
    del profile["calibration"]
    with ctx.store.session() as session:
        monitor_rows.put_reference(
            session, "default", "churn", 1, status="ready", reason="", source="s", profile=profile
        )


def _answered(answers: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.array([int(p) for a in answers for p in a["predictions"]])
    positive = np.array([float(p[1]) for a in answers for p in a["probabilities"]])
    return predicted, positive


def test_estimated_accuracy_is_close_to_the_accuracy_from_labels(
    settings: Settings,  # noqa: F811
    model: tuple[ModelRuntime, Reference],  # noqa: F811
) -> None:
    runtime, reference = model
    frame, labels = _labelled(np.random.default_rng(5), 1000)
    with running(settings) as (url, ctx), Client(url) as client:
        make_deployment(ctx, "guess-api")
        _save_without_calibration(ctx, reference)
        answers = serve_rows(url, runtime, "guess-api", frame, batch=100)
        _monitor(ctx, settings).tick()
        [window] = _windows(client, "guess-api", "1d")
        quality = window["summary"]["quality"]
        view = client.monitoring.view("guess-api", window="1d")
    predicted, positive = _answered(answers)
    true_accuracy = float(np.mean(predicted == labels))
    estimated = quality["estimated"]
    assert quality["labels"] == 0  # no label came back: only the estimate is known
    assert (estimated["method"], estimated["rows"], estimated["positive"]) == ("cbpe", 1000, "1")
    assert abs(estimated["accuracy"] - true_accuracy) < 0.03
    assert abs(estimated["roc_auc"] - roc_auc_score(labels, positive)) < 0.02
    # Exactly the mean probability of the predicted class, whatever the labels say.
    confidence = np.where(predicted == 1, positive, 1 - positive)
    assert abs(estimated["accuracy"] - confidence.mean()) < 1e-9
    # A profile stored before calibration tables existed: the estimate is uncalibrated.
    assert (estimated["calibrated"], estimated["ece"]) == (False, None)
    assert metric_value(window["summary"], "estimated_accuracy") == estimated["accuracy"]
    assert "estimated quality (before labels, cbpe, 1000 rows)" in _rendered(view)


def test_two_rounds_of_half_the_rows_estimate_as_one_round_of_all(
    settings: Settings,  # noqa: F811
    model: tuple[ModelRuntime, Reference],  # noqa: F811
) -> None:
    runtime, reference = model
    frame = _frame(np.random.default_rng(6), 600)
    with running(settings) as (url, ctx), Client(url) as client:
        make_deployment(ctx, "whole-api")
        make_deployment(ctx, "halves-api")
        save_reference(ctx.store, "default", "churn", 1, reference)
        serve_rows(url, runtime, "whole-api", frame)
        serve_rows(url, runtime, "halves-api", frame.iloc[:300])
        monitor = _monitor(ctx, settings)
        monitor.tick()
        serve_rows(url, runtime, "halves-api", frame.iloc[300:])
        monitor.tick()
        [whole] = _windows(client, "whole-api", "1d")
        [halves] = _windows(client, "halves-api", "1d")
    one, two = whole["summary"]["quality"]["estimated"], halves["summary"]["quality"]["estimated"]
    assert one["rows"] == two["rows"] == 600
    assert abs(one["accuracy"] - two["accuracy"]) < 1e-12
    assert abs(one["roc_auc"] - two["roc_auc"]) < 1e-12


def test_the_rounds_map_probabilities_through_the_reference_s_table(
    settings: Settings,  # noqa: F811
    model: tuple[ModelRuntime, Reference],  # noqa: F811
) -> None:
    runtime, reference = model
    rng = np.random.default_rng(8)
    held_out, held_labels = _labelled(rng, 2000)
    proba = runtime.model.predict_proba(held_out)
    table = calibration_table(proba, [str(v) for v in held_labels], ["0", "1"])
    assert table is not None
    assert reference.profile is not None
    calibrated = reference.model_copy(
        update={"profile": reference.profile.model_copy(update={"calibration": table})}
    )
    frame, labels = _labelled(rng, 1000)
    with running(settings) as (url, ctx), Client(url) as client:
        make_deployment(ctx, "calibrated-api")
        save_reference(ctx.store, "default", "churn", 1, calibrated)
        answers = serve_rows(url, runtime, "calibrated-api", frame, batch=100)
        _monitor(ctx, settings).tick()
        [window] = _windows(client, "calibrated-api", "1d")
    estimated = window["summary"]["quality"]["estimated"]
    predicted, positive = _answered(answers)
    assert (estimated["calibrated"], estimated["ece"]) == (True, table.ece)
    mapped = table.calibrate(positive)
    expected = np.where(predicted == 1, mapped, 1 - mapped).mean()
    assert abs(estimated["accuracy"] - expected) < 1e-9  # each row went through the table
    assert abs(estimated["accuracy"] - np.mean(predicted == labels)) < 0.03
    assert abs(estimated["roc_auc"] - roc_auc_score(labels, positive)) < 0.02
