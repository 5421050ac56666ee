"""The deployment page's drift section: each feature's training and window histograms, worst
first, from the stored window's counts and the version's reference profile."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from loopml.cli.monitor import _drift_table, _sequential_line
from loopml.core.drift import figure
from loopml.monitor import sequential
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.monitor.sketch import reduce
from loopml.monitor.windows import empty_state, summarize, window_start
from loopml.store import monitor as monitor_rows
from tests.unit.deploy.deploy_support import PackageFiles, package_files, register_files


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def _window(http: TestClient, config: DriftConfig | None = None) -> dict[str, Any]:
    """A reference of two features and the model's predictions, and one stored 1h window
    where ``moved`` and the predictions shifted; its drift summary."""
    ctx = http.app.state.running.context  # type: ignore[attr-defined]
    rng = np.random.default_rng(3)
    train = pa.table(
        {"calm": rng.normal(0, 1, 5_000), "moved": rng.normal(0, 1, 5_000),
         "colour": rng.choice(["red", "blue", "green"], 5_000)}
    )  # fmt: skip
    kinds = {"calm": "numeric", "moved": "numeric", "colour": "categorical"}
    predicted = rng.normal(10, 2, 5_000)
    profile = profile_table(train, kinds, task="regression", predictions=predicted)  # type: ignore[arg-type]
    reference = Reference(status="ready", source="dataset d@1, train split", profile=profile)
    save_reference(ctx.store, "default", "cancer", 1, reference)
    state = empty_state()
    current = {
        "calm": rng.normal(0, 1, 500),
        "moved": rng.normal(3, 1, 500),
        "colour": pa.array(["red", "blue", "green"] * 160 + ["purple"] * 20),
    }
    for name, values in current.items():
        state["features"][name] = reduce(profile.features[name], values).model_dump()
    state["prediction"] = reduce(profile.prediction, rng.normal(14, 2, 500)).model_dump()  # type: ignore[arg-type]
    state["sequential"] = sequential.piece(profile.features, pa.table(current))
    state["usage"]["rows"] = 500
    start = window_start(datetime.now(UTC), 3600)
    summary = summarize(state, reference, 3600, config or DriftConfig())
    window = {
        "end": start + timedelta(hours=1), "rows": 500, "labels": 0,
        "state": state, "summary": summary,
    }  # fmt: skip
    with ctx.store.session() as session:
        monitor_rows.put_window(session, "default", ("churn", "cancer", 1, "1h", start), window)
    drift: dict[str, Any] = summary["drift"]
    return drift


def test_each_feature_shows_its_training_and_window_histograms_worst_first(
    anonymous: TestClient, package: PackageFiles
) -> None:
    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package)
    control = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    before = anonymous.get("/projects/default/deployments/churn")
    assert "drift-pictures" not in before.text  # no window yet
    _window(anonymous)
    page = anonymous.get("/projects/default/deployments/churn")
    assert page.status_code == 200, page.text
    figures = re.findall(r'<figure class="card drift-feature".*?</figure>', page.text, re.S)
    names = [re.search(r"<strong>(.*?)</strong>", f).group(1) for f in figures]  # type: ignore[union-attr]
    assert names[0] == "moved"
    assert set(names) == {"moved", "calm", "colour"}
    moved = figures[0]
    assert 'aria-label="Distribution of moved in training"' in moved
    assert 'aria-label="Distribution of moved in this window"' in moved
    training, window = re.findall(r"<svg.*?</svg>", moved, re.S)
    # The caption says training is grey: its bars take the muted colour, the window's the accent.
    assert "in training (grey)" in page.text
    assert training.startswith('<svg class="histogram reference"')
    assert window.startswith('<svg class="histogram"')
    assert 10 <= training.count("<rect") <= 21
    # The same bars on both sides, plus the window's values above the training range.
    assert window.count("<rect") in (training.count("<rect"), training.count("<rect") + 1)
    assert "of the training rows</title>" in training
    assert "rows)</title>" in window
    assert "above" in moved
    assert "(outside training)" in moved
    colour = figures[names.index("colour")]
    assert "<td>all other values</td>" in colour  # purple was never seen in training
    assert re.search(r"<td>red</td><td>[0-9.]+ %</td><td>32.0 %</td><td>160</td>", colour)


def _cells(page: str, attribute: str, name: str) -> dict[str, str]:
    row = re.search(rf'<tr data-{attribute}="{name}">(.*?)</tr>', page, re.S)
    assert row, f"no drift row for {name}"
    return dict(re.findall(r'<td data-figure="(\w+)">([^<]*)</td>', row.group(1)))


def test_drift_figures_read_as_the_cli_writes_them_and_the_prediction_has_its_row(
    anonymous: TestClient, package: PackageFiles
) -> None:
    """A p-value of 1e-29 read 0.0000 on the page and 1e-29 in the CLI; the prediction's
    drift was in the CLI only (issue 55, item 4)."""
    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package)
    control = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    drift = _window(anonymous, DriftConfig(small_reference=5_000))  # KS decides: a p-value
    page = anonymous.get("/projects/default/deployments/churn").text
    moved = next(c for c in drift["columns"] if c["column"] == "moved")
    assert moved["method"] == "ks"
    assert 0 < moved["score"] < 5e-5  # four decimals: 0.0000
    cells = _cells(page, "column", "moved")
    assert cells["score"] == figure(moved["score"]) != "0.0000"
    assert cells["p"] == figure(moved["p_value"])
    assert cells["psi"] == figure(moved["psi"])
    # The CLI's drift table writes the same figures.
    console = Console(width=200, record=True)
    console.print(_drift_table(drift, [moved, drift["prediction"]]))
    printed = console.export_text()
    assert f" {cells['score']} " in printed
    assert f" {cells['psi']} " in printed
    prediction = drift["prediction"]
    assert prediction["drifted"]
    row = _cells(page, "prediction", "prediction")
    assert row["score"] == figure(prediction["score"])
    assert "prediction (the model&#39;s output)" in page
    assert f" {row['score']} " in printed


def test_the_sequential_test_reads_as_the_cli_writes_it(
    anonymous: TestClient, package: PackageFiles
) -> None:
    """The CUSUM that passed its threshold, named with its figures, on the page and in
    ``loopml monitor``'s line alike."""
    ctx = anonymous.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package)
    control = anonymous.app.state.running.serving.control  # type: ignore[attr-defined]
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    found = _window(anonymous)["sequential"]
    assert found["alarm"]
    assert (found["column"], found["score"], found["direction"], found["rows"]) == (
        "moved",
        "location",
        "up",
        500,
    )
    page = anonymous.get("/projects/default/deployments/churn").text
    cusum, limit = f"{found['cusum']:.1f}", f"{found['threshold']:.1f}"
    said = (
        '<strong class="bad" data-figure="sequential">moved location up drifted</strong>, '
        f"CUSUM {cusum} past {limit} at 500 rows."
    )
    assert said in page
    line = f"sequential: moved location up DRIFTED, CUSUM {cusum} >= {limit} at 500 rows"
    assert _sequential_line(found) == line
