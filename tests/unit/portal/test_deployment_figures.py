"""The figures for a deployment now, one answer on every face: a deployment that moved from
cancer/1 (busy, labelled, not drifted) to cancer/2 (serving, drifted, fewer rows), with a
request refused before any replica in the same window. The portal's page, the API's view,
``loopml monitor``'s table and the alert rules all speak of cancer/2."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from loopml.cli.monitor import render
from loopml.core.alerts import AlertRuleSpec
from loopml.faces.context import AppContext
from loopml.monitor import service
from loopml.monitor.drift import DriftConfig
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.monitor.windows import empty_state, window_start
from loopml.store import monitor as monitor_rows
from tests.unit.deploy.deploy_support import (
    PackageFiles,
    cancer_frame,
    package_files,
    register_files,
)
from tests.unit.monitor.logged import log_labels, log_predictions, monitor_at

COLUMNS = [f"f{i}" for i in range(8)]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def _two_versions(http: TestClient, package: PackageFiles) -> tuple[AppContext, datetime]:
    """cancer/1 answered 300 rows (119 labelled) and cancer/2, serving now, 30 rows from a
    scanner reporting ten times the sizes; a request refused before any replica stored as a
    window of model "" of the same start. The monitor has read it all."""
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    control = http.app.state.running.serving.control  # type: ignore[attr-defined]
    frame, target = cancer_frame()
    profile = profile_table(
        pa.Table.from_pandas(frame), dict.fromkeys(COLUMNS, "numeric"), task="classification"
    )  # type: ignore[arg-type]
    for version in (1, 2):
        register_files(ctx.store, ctx.artifacts, package)
        reference = Reference(status="ready", source="the training rows", profile=profile)
        save_reference(ctx.store, "default", "cancer", version, reference)
    control.create("default", "churn", {"model": "cancer/1", "min_replicas": 0}, actor="t")
    at = window_start(datetime.now(UTC), 3600) + timedelta(minutes=1)
    labels = [int(v) for v in target]

    def probabilities(n: int) -> np.ndarray:
        return np.tile([0.3, 0.7], (n, 1))

    old = frame.iloc[:300]
    keys = log_predictions(
        ctx, "churn", old, at, [1] * 300, probabilities(300), ["0", "1"],
        model="cancer", version=1, prefix="old",
    )  # fmt: skip
    log_labels(ctx, "churn", keys[:119], labels[:119], at + timedelta(seconds=5))
    control.update("default", "churn", {"model": "cancer/2"}, actor="t")
    new = frame.iloc[300:330] * 10
    log_predictions(
        ctx, "churn", new, at, [1] * 30, probabilities(30), ["0", "1"],
        model="cancer", version=2, prefix="new",
    )  # fmt: skip
    refused = empty_state()
    refused["usage"].update(requests=1, errors=1, errors_by_status={"405": 1})
    start = window_start(at, 3600)
    with ctx.store.session() as session:
        monitor_rows.put_window(
            session, "default", ("churn", "", 0, "1h", start),
            {"end": start + timedelta(hours=1), "rows": 0, "labels": 0, "state": refused,
             "summary": {"usage": {"requests": 1, "errors": 1}}},
        )  # fmt: skip
    spec = AlertRuleSpec(
        name="drifting", deployment="churn", metric="drift_share", comparator=">", threshold=0.5
    )
    service.create_rule(ctx.store, "default", spec, actor="t")
    clock = [at + timedelta(seconds=30)]
    monitor_at(ctx, clock).tick()
    return ctx, start


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_face_shows_the_serving_version_and_its_drift_bars(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _two_versions(anonymous, package)
    view = anonymous.get("/api/v1/projects/default/deployments/churn/monitor").json()
    now = view["now"]
    assert (now["model"], now["version"], now["traffic_percent"]) == ("cancer", 2, 100)
    window = now["window"]
    drift = window["summary"]["drift"]
    assert (window["rows"], len(drift["drifted"]), drift["judged"]) == (30, 8, 8)
    assert window["summary"]["quality"]["labels"] == 0
    assert {(o["model"], o["requests"]) for o in now["others"]} == {("cancer", 6), ("", 1)}
    assert view["firing"] == ["drifting"]  # the rule judged cancer/2, not busier cancer/1

    page = anonymous.get("/projects/default/deployments/churn").text
    text = _text(page)
    assert "Of cancer/2 ( 100 % of traffic)" in text
    assert "30 rows" in text
    assert "8 of 8 judged features drifted" in text
    assert "cancer/1" not in text.split("Live quality", 1)[1].split("Alert", 1)[0]
    assert re.search(r"Labels received 0 \(0(\.0)? % of rows\)", text)
    assert "estimated from 30 rows (cbpe, probabilities not calibrated)" in text
    assert "estimated rows" not in text
    # Each feature's bars for this window hold its 30 rows (none was empty before).
    figures = re.findall(r'<figure class="card drift-feature".*?</figure>', page, re.S)
    assert len(figures) == 8
    for figure in figures:
        rows = [int(n) for n in re.findall(r"</td><td>(\d+)</td></tr>", figure)]
        assert sum(rows) == 30, figure
    assert "p-value for ks and chi2 (lower is more different)" in text

    shown = Console(record=True, width=80)
    shown.print(render(view))
    out = shown.export_text()
    assert "serving cancer/2 (100 % of traffic)" in out
    assert "(cancer/2, 30 rows)" in out
    assert "drift: 8/8 columns" in out
    assert "live quality: no labels yet" in out
    assert "also in this window: cancer/1: 6 requests" in out
    assert "also in this window: no replica: 1 requests, 1 failed" in out


def test_feature_bars_are_the_asked_versions_window(
    anonymous: TestClient, package: PackageFiles
) -> None:
    ctx, start = _two_versions(anonymous, package)
    for version, rows in ((1, 300), (2, 30)):
        found = service.feature_distributions(
            ctx.store, "default", "churn", model="cancer", version=version, size="1h", start=start
        )
        counts: list[Any] = [sum(b.current_rows for b in d.bins) for d in found.values()]
        assert counts == [rows] * 8, (version, counts)


def test_the_cli_says_how_many_drift_columns_it_hides_and_keeps_names_whole(
    anonymous: TestClient, package: PackageFiles
) -> None:
    _two_versions(anonymous, package)
    view = anonymous.get("/api/v1/projects/default/deployments/churn/monitor").json()
    drift = view["now"]["window"]["summary"]["drift"]
    # Thirty columns with the breast-cancer data's long names, as the demo's model has.
    model = drift["columns"][0]
    drift["columns"] = [
        {**model, "column": f"worst concave points {n}", "psi": 30.0 - n} for n in range(30)
    ]
    shown = Console(record=True, width=80)
    shown.print(render(view))
    out = shown.export_text()
    # A name too long for its column folds onto more lines, whole (it was cut with "…").
    table = out.split("drift: 8/8 columns", 1)[1].splitlines()
    cells = [line.split("│")[1].strip() for line in table if line.startswith("│ ")]
    names = " ".join(cells)
    assert all(f"worst concave points {n}" in names for n in range(8))
    assert "…" not in out
    flat = " ".join(out.split())
    assert "8 of 30 columns shown, the worst first; 22 hidden" in flat
    assert "(all of them: loopml monitor churn --all, or -o json)" in flat
    every = Console(record=True, width=80)
    every.print(render(view, show_all=True))
    assert "hidden" not in every.export_text()
    # The window's first look's share of 0.001 (DriftConfig.level), over the 8 judged columns.
    assert f"ks p < {DriftConfig().level(1) / 8:.3g}" in out, out
    header = next(line for line in out.splitlines() if line.startswith("┃ column"))
    assert header.rstrip().endswith("outside ┃"), header  # the table fits in 80 columns
