"""The monitor over real prediction logs: a model server's sink posts to a running platform
(uvicorn in a thread), labels come through the feedback API, and the monitor's rounds are
run by hand with the real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from loopml.client import Client
from loopml.core.deployments import prediction_table
from loopml.data import lake
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.monitor.metrics import MonitorCollector
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import save_reference
from loopml.packaging import load_model, package_model
from loopml.pipelines import automation_service as auto
from loopml.pipelines import service as pipelines
from loopml.pipelines.automation import AutomationEngine
from loopml.platform import create_api_app
from loopml.predictions._rows import PREDICTION_SCHEMA
from loopml.predictions.http_sink import HttpPredictionSink
from loopml.serve import ModelRuntime, create_model_app
from loopml.settings import Settings
from loopml.store import events
from tests.conftest import free_port
from tests.unit.api.test_feedback import make_deployment
from tests.unit.monitor.test_alerts import _Hook
from tests.unit.monitor.test_alerts import hook as hook  # a fixture
from tests.waiting import eventually

FEATURES = ["a", "b"]


def _rendered(view: dict[str, Any]) -> str:
    from rich.console import Console

    from loopml.cli.monitor import render

    console = Console(record=True, width=160)
    console.print(render(view))
    return console.export_text()


@pytest.fixture
def settings(tmp_path: Path, migrated_database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        monitor={
            "enabled": False,
            "lag_s": 0,
            "windows": ["1h", "1d"],
            "webhook_allow": ["127.0.0.1"],
            "webhook_attempts": 1,
            # The rules each test makes are the only ones (test_alerts checks the defaults).
            "default_rules": [],
        },
    )


@contextmanager
def running(settings: Settings) -> Iterator[tuple[str, AppContext]]:
    """The platform served by uvicorn in a thread; its URL and context."""
    app = create_api_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), 60, "the platform to start")
    assert server.started, "the platform's thread ended before it started"
    try:
        yield f"http://127.0.0.1:{port}", app.state.running.context
    finally:
        server.should_exit = True
        thread.join(30)


def _frame(rng: np.random.Generator, rows: int, shift_b: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(0, 1, rows), "b": rng.normal(shift_b, 1, rows)})


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRuntime, Reference]:
    """A classifier on two features, and its reference from its 3,000 training rows."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    train = _frame(rng, 3000)
    target = (train["a"] + train["b"] + rng.normal(0, 0.5, 3000) > 0).astype(int)
    fitted = LogisticRegression().fit(train, target)
    package = package_model(fitted, tmp_path_factory.mktemp("model"), sample=train)
    runtime = ModelRuntime(load_model(package.path, manifest_sha256=package.manifest_sha256))
    profile = profile_table(
        pa.Table.from_pandas(train),
        {"a": "numeric", "b": "numeric"},
        task="classification",
        predictions=fitted.predict(train),
        classes=["0", "1"],
    )
    return runtime, Reference(status="ready", source="test training rows", profile=profile)


def serve_rows(
    url: str, runtime: ModelRuntime, deployment: str, frame: pd.DataFrame, batch: int = 50
) -> list[dict[str, Any]]:
    """Send ``frame`` to a model server of ``deployment`` whose log goes to the platform."""
    sink = HttpPredictionSink(url, "default", deployment, flush_ms=0)
    app = create_model_app(runtime, deployment=deployment, model_name="churn", version=1, sink=sink)
    answers = []
    with TestClient(app, base_url="http://127.0.0.1") as server:
        for start in range(0, len(frame), batch):
            rows = frame.iloc[start : start + batch].to_dict("records")
            response = server.post("/predict", json={"instances": rows})
            assert response.status_code == 200, response.text
            answers.append(response.json())
    assert sink.close().delivered == len(frame)
    return answers


def _monitor(ctx: AppContext, settings: Settings, clock: Any = None) -> Monitor:
    # The real time at each round: rows served after a round land after its watermark.
    return Monitor(
        ctx.store, ctx.artifacts, settings.monitor, clock=clock or (lambda: datetime.now(UTC))
    )


def _events(ctx: AppContext, kind: str) -> list[Any]:
    with ctx.store.session() as session:
        return list(events.list_(session, type=kind).items)


def _windows(client: Client, deployment: str, size: str = "1h") -> list[dict[str, Any]]:
    return client.monitoring.windows(deployment, window=size)


def test_unshifted_traffic_shows_no_drift_and_a_shifted_feature_drifts_once(
    settings: Settings, model: tuple[ModelRuntime, Reference]
) -> None:
    runtime, reference = model
    rng = np.random.default_rng(1)
    with running(settings) as (url, ctx), Client(url) as client:
        make_deployment(ctx, "calm-api")
        make_deployment(ctx, "moved-api")
        save_reference(ctx.store, "default", "churn", 1, reference)
        serve_rows(url, runtime, "calm-api", _frame(rng, 400))
        serve_rows(url, runtime, "moved-api", _frame(rng, 400, shift_b=2.0))
        monitor = _monitor(ctx, settings)
        report = monitor.tick()
        assert (report.deployments, report.rows) == (2, 800)
        registry = CollectorRegistry()
        registry.register(MonitorCollector(monitor))
        scraped = generate_latest(registry).decode()
        assert (
            'loopml_monitor_drift_share{deployment="moved-api",model="churn",project="default",'
            'version="1"} 0.5' in scraped
        )
        assert 'loopml_monitor_drift_share{deployment="calm-api"' in scraped

        [calm] = _windows(client, "calm-api")
        drift = calm["summary"]["drift"]
        assert (drift["judged"], drift["drifted"], drift["dataset_drift"]) == (2, [], False)
        assert {c["method"] for c in drift["columns"]} == {"wasserstein"}
        assert not drift["prediction"]["drifted"]
        used = calm["summary"]["usage"]
        assert (used["requests"], used["rows"], used["batch_max"]) == (8, 400, 50)
        assert used["latency_p50_ms"] is not None
        assert used["latency_p99_ms"] >= used["latency_p50_ms"]
        assert len(_windows(client, "calm-api", "1d")) == 1

        [moved] = _windows(client, "moved-api")
        drift = moved["summary"]["drift"]
        assert drift["drifted"] == ["b"]
        assert drift["dataset_drift"]
        assert [e.subject for e in _events(ctx, "drift.detected")] == ["moved-api"]
        [event] = _events(ctx, "drift.detected")
        assert event.payload["drifted"] == ["b"]
        assert event.payload["model"] == "churn"

        # The drift lasts: more shifted rows, another round, still one episode.
        serve_rows(url, runtime, "moved-api", _frame(rng, 200, shift_b=2.0))
        monitor.stop()  # a restarted server's monitor goes on from the watermark
        assert _monitor(ctx, settings).tick().rows == 200
        assert len(_events(ctx, "drift.detected")) == 1
        assert _windows(client, "moved-api")[0]["rows"] == 600


def test_drift_detected_starts_the_retrain_trigger(
    settings: Settings, model: tuple[ModelRuntime, Reference]
) -> None:
    runtime, reference = model
    spec = "name: retrain\nsteps:\n  - {name: a, python: 'm:f'}\n"
    # The platform's own automation engine would race this test's engine for the event (one
    # engine fires it; CI once saw the platform's win): it ticks once at start, then not again.
    quiet = settings.server.model_copy(update={"automation_interval_s": 3600.0})
    settings = settings.model_copy(update={"server": quiet})
    with running(settings) as (url, ctx):
        pipelines.apply_spec(ctx.store, "default", spec, actor="t")
        auto.create_trigger(
            ctx.store,
            "default",
            name="on-drift",
            pipeline="retrain",
            on="drift.detected",
            where={"deployment": "moved-api"},
            actor="t",
        )
        make_deployment(ctx, "moved-api")
        save_reference(ctx.store, "default", "churn", 1, reference)
        serve_rows(url, runtime, "moved-api", _frame(np.random.default_rng(2), 300, shift_b=3.0))
        engine = AutomationEngine(ctx.store)
        engine.tick()
        assert "drift.detected" in _monitor(ctx, settings).tick().events
        assert engine.tick().events == 1
        [firing] = auto.trigger_history(ctx.store, "default", "on-drift")
        assert firing.run_id is not None


def _log_rows(ctx: AppContext, deployment: str, stamps: list[datetime]) -> list[str]:
    """Prediction-log rows at chosen times (one request each), appended as the log does."""
    ids = [f"req-{i}" for i in range(len(stamps))]
    rows = {
        "inference_id": ids,
        "row_index": [0] * len(ids),
        "deployment": [deployment] * len(ids),
        "model": ["churn"] * len(ids),
        "model_version": [1] * len(ids),
        "role": ["primary"] * len(ids),
        "ts": [s.replace(tzinfo=None) for s in stamps],
        "latency_ms": [2.0] * len(ids),
        "protocol": ["predict"] * len(ids),
        "inputs": ['{"a": 0.1, "b": 0.2}'] * len(ids),
        "prediction": ["1"] * len(ids),
        "prediction_value": [1.0] * len(ids),
        "probabilities": ['{"0": 0.2, "1": 0.8}'] * len(ids),
    }
    table = pa.Table.from_pydict(rows, schema=PREDICTION_SCHEMA)
    lake.ingest_arrow(
        ctx.store, ctx.artifacts, "default", prediction_table(deployment), table, actor="t"
    )
    return ids


def test_late_labels_fold_into_the_window_of_their_prediction(
    settings: Settings, model: tuple[ModelRuntime, Reference], hook: str
) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    early, late = hour - timedelta(hours=3), hour - timedelta(hours=2)
    if hour.hour < 3:
        # Both in one UTC day, the rule's 1d window, which its newest window must be: before
        # 03:00 that is yesterday evening (within the monitor's 24 h backfill).
        day = hour.replace(hour=0)
        early, late = day - timedelta(hours=4), day - timedelta(hours=3)
    with running(settings) as (url, ctx), Client(url) as client:
        make_deployment(ctx, "late-api")
        save_reference(ctx.store, "default", "churn", 1, model[1])
        ids = _log_rows(ctx, "late-api", [early + timedelta(minutes=5)] * 4 + [late] * 4)
        client.monitoring.create_alert(
            "accuracy",
            deployment="late-api",
            metric="accuracy",
            comparator="<",
            threshold=0.9,
            window="1d",
            webhook=hook,
        )
        monitor = _monitor(ctx, settings, lambda: datetime.now(UTC))
        monitor.tick()
        by_start = {w["start"][:13]: w for w in _windows(client, "late-api")}
        assert {w["rows"] for w in by_start.values()} == {4}
        assert all(w["labels"] == 0 for w in by_start.values())

        # Labels for the earlier hour's requests arrive hours later: 3 right, 1 wrong.
        labels = [{"inference_id": i, "label": 1 if n < 3 else 0} for n, i in enumerate(ids[:4])]
        client.predictions.feedback_many("late-api", labels)
        monitor.tick()
        by_start = {w["start"][:13]: w for w in _windows(client, "late-api")}
        first = by_start[early.isoformat()[:13]]
        second = by_start[late.isoformat()[:13]]
        assert (first["labels"], second["labels"]) == (4, 0)
        quality = first["summary"]["quality"]
        assert quality["accuracy"] == 0.75
        assert quality["coverage"] == 1.0
        assert quality["delay_mean_s"] > 3600
        assert quality["log_loss"] == pytest.approx(-(3 * np.log(0.8) + np.log(0.2)) / 4)
        assert second["summary"]["quality"].get("accuracy") is None

        # The day's accuracy (0.75) is under the rule's 0.9: it fires once, says so to the
        # trigger engine (quality.degraded) and to the webhook, and stays firing quietly.
        assert [e.type for e in _events(ctx, "alert.*") if e.type.count(".") == 1] == [
            "alert.firing"
        ]
        assert len(_events(ctx, "quality.degraded")) == 1
        monitor.tick()
        assert len(_events(ctx, "alert.firing")) == len(_events(ctx, "quality.degraded")) == 1
        [rule] = client.monitoring.alerts()
        assert (rule.state, rule.last_value) == ("firing", 0.75)
        [delivery] = client.monitoring.deliveries("accuracy")
        assert (delivery["outcome"], delivery["status"]) == ("delivered", 200)
        [posted] = _Hook.received
        assert "accuracy" in posted["text"]
        assert posted["loopml"]["event"] == "alert.firing"
        view = client.monitoring.view("late-api", window="1d")
        assert view["firing"] == ["accuracy"]
        assert "FIRING" in _rendered(view)
