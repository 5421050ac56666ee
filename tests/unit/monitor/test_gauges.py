"""The monitor's Prometheus gauges stay while their figure is known (issue 55, item 6): a
version's accuracy is over the last hour, or further back until it holds enough labels, not
the newest window's (which right after it turns has no label yet); on SQLite and
PostgreSQL, the monitor's rounds run by hand on a chosen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.monitor.gauges import ENOUGH_LABELS
from loopml.monitor.metrics import FigureFile, MonitorCollector
from tests.unit.monitor.logged import log_labels, log_predictions, monitor_at

VERSION = {"project": "default", "deployment": "churn-api", "model": "churn", "version": "1"}


def _scraped(monitor: Monitor, figures: FigureFile | None = None) -> dict[str, float]:
    """The monitor's gauges of churn-api's version 1, by metric name, as a scrape reads them
    (its figures those of ``figures``, when given)."""
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor, figures))
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.labels == VERSION:
                found[sample.name] = sample.value
    return found


def _answered(
    ctx: AppContext, count: int, at: datetime, predicted: str, prefix: str
) -> list[tuple[str, int]]:
    """``count`` rows classified as ``predicted`` at ``at``, in churn-api's log."""
    rng = np.random.default_rng(len(prefix) + count)
    frame = pd.DataFrame({"a": rng.normal(0, 1, count), "b": rng.normal(0, 1, count)})
    sure = [0.2, 0.8] if predicted == "1" else [0.8, 0.2]
    return log_predictions(
        ctx,
        "churn-api",
        frame,
        at,
        [predicted] * count,
        np.array([sure] * count),
        ["0", "1"],
        prefix=prefix,
    )


def test_accuracy_reaches_back_past_a_window_without_labels_until_it_has_enough(
    store_ctx: AppContext,
) -> None:
    ctx = store_ctx
    hour = (datetime.now(UTC) - timedelta(hours=4)).replace(minute=0, second=0, microsecond=0)
    # Labelled answers two hours before; unlabelled ones since (labels come late).
    old = _answered(ctx, 60, hour - timedelta(minutes=90), "1", "old")
    log_labels(ctx, "churn-api", old, ["1"] * 45 + ["0"] * 15, hour - timedelta(minutes=80))
    mid = _answered(ctx, 40, hour - timedelta(minutes=30), "1", "mid")
    _answered(ctx, 10, hour + timedelta(minutes=1), "1", "new")
    clock = [hour + timedelta(minutes=2)]
    monitor = monitor_at(ctx, clock)
    monitor.tick()

    scraped = _scraped(monitor)
    # The newest window (10 answers, no label) alone had no accuracy series: the gauge read
    # it until this change, and the series was gone until a label landed in it.
    assert scraped["loopml_monitor_accuracy"] == pytest.approx(0.75), scraped
    assert scraped["loopml_monitor_label_coverage"] == pytest.approx(60 / 110), scraped
    # From the start of the labelled window (two hours before) to now.
    assert scraped["loopml_monitor_accuracy_seconds"] == pytest.approx(2 * 3600 + 120), scraped

    # Enough labels within the last hour: the gauge stops there.
    now_labelled = _answered(ctx, ENOUGH_LABELS, hour + timedelta(minutes=2), "0", "now")
    at = hour + timedelta(minutes=4)
    log_labels(ctx, "churn-api", [*mid, *now_labelled], ["0"] * (40 + ENOUGH_LABELS), at)
    clock[0] = hour + timedelta(minutes=5)
    monitor.tick()
    scraped = _scraped(monitor)
    # 40 wrong (predicted 1, labelled 0), 50 right, read over the last hour only.
    assert scraped["loopml_monitor_accuracy"] == pytest.approx(50 / 90), scraped
    assert scraped["loopml_monitor_accuracy_seconds"] == pytest.approx(3600 + 300), scraped


def test_the_figures_of_a_monitor_process_reach_the_servers_gauges_through_its_file(
    store_ctx: AppContext, tmp_path: Path
) -> None:
    """``monitor.process``: the rounds run in another process, which writes its figures to
    a file after each one; the server's collector reads them from there."""
    ctx = store_ctx
    hour = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    answered = _answered(ctx, 60, hour - timedelta(minutes=30), "1", "a")
    log_labels(ctx, "churn-api", answered, ["1"] * 45 + ["0"] * 15, hour - timedelta(minutes=20))
    rounds = monitor_at(ctx, [hour + timedelta(minutes=2)])
    rounds.tick()
    figures = FigureFile(tmp_path / "figures.json")
    server = Monitor(ctx.store, ctx.artifacts, ctx.settings.monitor, takes_lease=False)
    assert _scraped(server, figures) == {}  # before the process's first round

    figures.write(rounds)
    read = _scraped(server, FigureFile(figures.path))  # as the server reads it
    assert read == _scraped(rounds) != {}
    assert read["loopml_monitor_accuracy"] == pytest.approx(0.75), read

    # A file that cannot be read (written by hand, say) leaves the figures last read.
    server_figures = FigureFile(figures.path)
    assert _scraped(server, server_figures) == read
    figures.path.write_text("{not json", encoding="utf-8")
    assert _scraped(server, server_figures) == read


def test_a_version_without_traffic_or_labels_in_the_look_back_has_no_gauge(
    store_ctx: AppContext,
) -> None:
    ctx = store_ctx
    hour = (datetime.now(UTC) - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    _answered(ctx, 20, hour, "1", "req")
    clock = [hour + timedelta(minutes=10)]
    monitor = monitor_at(ctx, clock)
    monitor.tick()
    scraped = _scraped(monitor)
    assert "loopml_monitor_accuracy" not in scraped  # answered, never labelled
    assert "loopml_monitor_label_coverage" not in scraped
    # Three hours later, no answer in the last hour and no label: nothing to say.
    clock[0] = hour + timedelta(hours=3)
    monitor.tick()
    assert _scraped(monitor) == {}
