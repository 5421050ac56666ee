"""One view, many faces: a real ``loopml up`` watches a deployment that moved from cancer/1
to cancer/2, with drifted traffic on cancer/2 (fewer rows than cancer/1 in the same hour), labels
through the feedback API and a drift alert. What the portal's page shows in
Chromium, what ``loopml monitor -o json`` prints, what ``loopml monitor`` draws and what the
API returns are compared figure by figure: they must be the same."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from loopml.client import Client
from loopml.core.drift import figure
from tests.unit.deploy.deploy_support import cancer_frame
from tests.unit.monitor.logged import log_predictions
from tests.waiting import eventually

from .conftest import RunningServer, log_cancer_model, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(400)]
# The lag must exceed the prediction log's flush delay and the test's own appends.
FAST = {"LOOPML_MONITOR_INTERVAL_S": "1", "LOOPML_MONITOR_LAG_S": "6"}


@dataclass
class _Ctx:
    """The server's store and artifacts, as the prediction log's writer holds them."""

    store: Any
    artifacts: Any


def _setup(server: RunningServer, tmp: Path) -> None:
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore

    log_cancer_model(server, tmp / "pkg", versions=2)
    frame, target = cancer_frame()
    ctx = _Ctx(
        MetadataStore(f"sqlite:///{server.home / 'loopml.db'}"),
        LocalArtifactStore(server.home / "artifacts"),
    )
    try:
        with Client(server.url) as client:
            # Both versions' reference: the rows they were trained on, as a user sets it.
            client.tables.append_records("default", "training", frame.to_dict("records"))
            for version in (1, 2):
                client.monitoring.set_reference("cancer", version, table="training")
            client.deployments.create("churn", "cancer/1", min_replicas=0)
            old = frame.iloc[:200]
            log_predictions(
                ctx, "churn", old, datetime.now(UTC), [1] * 200, np.tile([0.3, 0.7], (200, 1)),
                ["0", "1"], model="cancer", version=1, prefix="old",
            )  # fmt: skip
            client.deployments.update("churn", model="cancer/2")
            new = frame.iloc[300:340] * 10  # a scanner reporting ten times the sizes
            keys = log_predictions(
                ctx, "churn", new, datetime.now(UTC), [1] * 40, np.tile([0.3, 0.7], (40, 1)),
                ["0", "1"], model="cancer", version=2, prefix="new", batch=10,
            )  # fmt: skip
            labels = [int(v) for v in target.iloc[300:340]]
            items = [
                {"inference_id": ident, "row_index": row, "label": label}
                for (ident, row), label in zip(keys[:25], labels[:25], strict=True)
            ]
            client.predictions.feedback_many("churn", items)
    finally:
        ctx.store.dispose()
    made = server.cli(
        "alerts", "create", "drifting", "-d", "churn", "--metric", "drift_share",
        "--threshold", "0.5",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr


def _settled(server: RunningServer) -> dict[str, Any]:
    """``loopml monitor churn -o json`` once the monitor has read everything."""

    def view() -> dict[str, Any]:
        shown = server.cli("monitor", "churn", "-o", "json")
        assert shown.returncode == 0, shown.stderr
        found: dict[str, Any] = json.loads(shown.stdout)
        return found

    def done() -> dict[str, Any] | None:
        found = view()
        window = found["now"]["window"]
        if window is None or (window["rows"], window["labels"]) != (40, 25):
            return None
        return found if found["firing"] == ["drifting"] else None

    def seen() -> object:
        found = view()
        windows = [(w["model"], w["version"], w["rows"]) for w in found["windows"]]
        return (found["firing"], found["alerts"], windows)

    return eventually(
        done, 120, "a window of 40 rows and 25 labels, drifting firing", interval_s=0.5,
        describe=seen,
    )  # fmt: skip


def _page_figures(chromium: Browser, url: str) -> dict[str, Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        answer = page.goto(f"{url}/projects/default/deployments/churn")
        assert answer is not None
        assert answer.status == 200

        def figure(name: str) -> str:
            return page.locator(f'[data-figure="{name}"]').first.inner_text().strip()

        columns = {}
        for row in page.locator("#drift-h ~ table tbody tr[data-column]").all():
            name = row.get_attribute("data-column")
            score = row.locator('[data-figure="score"]').inner_text()
            psi = row.locator('[data-figure="psi"]').inner_text()
            columns[name] = (float(score), float(psi))
        firing = [
            row.locator("td").first.inner_text()
            for row in page.locator("#alert-h ~ table tbody tr").all()
            if "firing" in row.inner_text()
        ]
        bars = [
            sum(
                int((cells.nth(3).text_content() or "").replace(",", ""))
                for cells in (r.locator("td") for r in fig.locator("tbody tr").all())
            )
            for fig in page.locator("figure.drift-feature").all()
        ]
        Path("/tmp/shots-a").mkdir(exist_ok=True)
        page.screenshot(path="/tmp/shots-a/monitor-faces.png", full_page=True)
        return {
            "version": figure("version"),
            "traffic": int(figure("traffic")),
            "rows": int(figure("rows").replace(",", "")),
            "labels": int(figure("labels").replace(",", "")),
            "accuracy": float(figure("accuracy")),
            "drifted": int(figure("drifted")),
            "judged": int(figure("judged")),
            "columns": columns,
            "firing": firing,
            "bars": bars,
            "chart": json.loads(page.locator("#usage-data").text_content() or "{}"),
        }
    finally:
        context.close()


def test_the_portal_the_cli_and_the_api_show_the_same_figures(
    tmp_path: Path, chromium: Browser
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_server(home, FAST) as server:
        _setup(server, tmp_path)
        cli = _settled(server)
        with Client(server.url) as client:
            api = client.monitoring.view("churn")
        shown = server.cli("monitor", "churn", "--all")
        page = _page_figures(chromium, server.url)

    now = cli["now"]
    assert api["now"] == now  # the API and `loopml monitor -o json`: one answer
    window = now["window"]
    summary = window["summary"]
    drift, quality = summary["drift"], summary["quality"]
    assert (now["model"], now["version"], now["traffic_percent"]) == ("cancer", 2, 100)
    assert page["version"] == "cancer/2"
    assert page["traffic"] == now["traffic_percent"] == 100
    assert page["rows"] == window["rows"] == 40
    assert page["labels"] == quality["labels"] == 25
    assert page["accuracy"] == round(quality["accuracy"], 4)
    assert page["drifted"] == len(drift["drifted"]) == 8
    assert page["judged"] == drift["judged"] == 8
    assert page["columns"] == {
        c["column"]: (float(figure(c["score"])), float(figure(c["psi"]))) for c in drift["columns"]
    }
    assert page["firing"] == cli["firing"] == api["firing"] == ["drifting"]
    assert page["bars"] == [40] * 8  # every feature's window bars hold the window's rows
    # The usage chart: the last hour in the monitor's 1-minute usage windows, a point a
    # minute, each the requests counted in its minute over the minute's length. Drawn whole,
    # it holds every request the (1 h) windows of the monitor's view counted: the requests
    # all came within this test's few minutes, inside the hour shown.
    chart = page["chart"]
    bucket_s = chart["bucket_s"]
    assert bucket_s == 60
    assert len(chart["t"]) >= 60
    drawn = [rps * bucket_s for rps in chart["rps"] if rps is not None]
    counted = sum(w["summary"]["usage"]["requests"] for w in api["windows"])
    assert counted >= 8  # cancer/1's 4 requests and cancer/2's 4 (and the refused ones)
    assert sum(drawn) == pytest.approx(counted)
    assert all(abs(n - round(n)) < 1e-6 for n in drawn)  # whole requests in each minute

    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "serving cancer/2 (100 % of traffic)" in text
    assert "(cancer/2, 40 rows)" in text
    assert "drift: 8/8 columns (100%) - INPUT DRIFTED" in text
    assert f"live quality: accuracy {quality['accuracy']:.3g}" in text
    assert "25 labels" in text
    for other in now["others"]:  # cancer/1, unless an hour turned between the two
        name = f"{other['model']}/{other['version']}" if other["model"] else "no replica"
        line = f"also in this window: {name}: {other['requests']} requests"
        assert line in text
    assert "FIRING" in text
    assert "drifting" in text
