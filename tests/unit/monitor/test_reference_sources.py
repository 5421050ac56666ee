"""References of versions whose run consumed no dataset: from the sample the model was
logged with, or from a lake table the user names (API, SDK, CLI), on SQLite and PostgreSQL;
drift then works for the version's deployment windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import loopml
from loopml.cli.main import app as cli
from loopml.client import Client
from loopml.core.deployments import prediction_table
from loopml.core.errors import NotFoundError, ValidationError
from loopml.data import lake
from loopml.faces.context import AppContext
from loopml.monitor.engine import Monitor
from loopml.monitor.reference_store import get_reference
from loopml.platform import create_app as create_platform
from loopml.predictions._rows import PREDICTION_SCHEMA
from loopml.settings import Settings
from loopml.store import events
from tests.unit.api.test_feedback import make_deployment
from tests.unit.monitor.test_engine import running
from tests.unit.monitor.test_engine import settings as settings  # a fixture


def _frame(rows: int, seed: int = 0, shift_b: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(0, 1, rows), "b": rng.normal(shift_b, 1, rows)}).astype(
        np.float64
    )


def _log_version(client: Client, sample_rows: int) -> int:
    """A classifier logged from user code (no dataset) with ``sample_rows`` sample rows,
    registered as the next version of ``churn``."""
    from sklearn.linear_model import LogisticRegression

    train = _frame(2000)
    fitted = LogisticRegression().fit(train, (train["a"] + train["b"] > 0).astype(int))
    with loopml.start_run("user-code", client=client) as run:
        run.log_model(fitted, sample=train.head(sample_rows))
    return client.models.register_version("churn", run_id=run.id).version


def _serve(ctx: AppContext, deployment: str, version: int, frame: pd.DataFrame) -> None:
    """Prediction-log rows of ``version`` for ``frame``, one request a row, served now (after
    the watermark of the monitor's previous round)."""
    stamp = datetime.now(UTC).replace(tzinfo=None)
    ids = [f"req-{version}-{i}-{stamp.timestamp()}" for i in range(len(frame))]
    rows = {
        "inference_id": ids,
        "row_index": [0] * len(ids),
        "deployment": [deployment] * len(ids),
        "model": ["churn"] * len(ids),
        "model_version": [version] * len(ids),
        "role": ["primary"] * len(ids),
        "ts": [stamp] * len(ids),
        "latency_ms": [2.0] * len(ids),
        "protocol": ["predict"] * len(ids),
        "inputs": [orjson.dumps(r).decode() for r in frame.to_dict("records")],
        "prediction": ["1"] * len(ids),
        "prediction_value": [1.0] * len(ids),
        "probabilities": ['{"0": 0.2, "1": 0.8}'] * len(ids),
    }
    table = pa.Table.from_pydict(rows, schema=PREDICTION_SCHEMA)
    lake.ingest_arrow(
        ctx.store, ctx.artifacts, "default", prediction_table(deployment), table, actor="t"
    )


def _set_events(ctx: AppContext) -> list[Any]:
    with ctx.store.session() as session:
        return list(events.list_(session, type="model.version.reference.set").items)


def _drift(client: Client, deployment: str) -> dict[str, Any]:
    newest = client.monitoring.windows(deployment)[0]  # the hour may have turned between rounds
    drift: dict[str, Any] = newest["summary"]["drift"]
    return drift


def test_a_version_logged_without_a_dataset_is_profiled_from_its_sample(
    settings: Settings,
) -> None:
    with running(settings) as (url, ctx), Client(url) as client:
        logged = _log_version(client, 300)
        small = _log_version(client, 12)
        shown = client.monitoring.reference("churn", logged)
        assert shown["status"] == "ready", shown
        assert shown["source"] == "the sample logged with the model, 300 rows"
        profile = shown["profile"]
        assert (profile["origin"], profile["rows"]) == ("logged_sample", 300)
        assert sorted(profile["features"]) == ["a", "b"]
        assert profile["features"]["a"]["rows"] == 300
        assert profile["prediction"]["kind"] == "categorical"
        # The model's own predictions on the sample, both classes among them.
        assert set(profile["prediction"]["values"]) == {"0", "1"}

        refused = client.monitoring.reference("churn", small)
        assert refused["status"] == "off"
        assert refused["profile"] is None
        assert "a sample of 12 rows (at least 30 are needed)" in refused["reason"]
        assert "--table" in refused["reason"]

        # The views say where the profile came from, or why there is none.
        make_deployment(ctx, "sampled-api")
        _serve(ctx, "sampled-api", logged, _frame(200, seed=1, shift_b=2.0))
        monitor = Monitor(ctx.store, ctx.artifacts, settings.monitor)
        monitor.tick()
        view = client.monitoring.view("sampled-api")
        key = f"churn/{logged}"
        assert view["references"][key]["origin"] == "logged_sample"
        drift = _drift(client, "sampled-api")
        assert drift["status"] == "ready"
        assert drift["drifted"] == ["b"]
        assert {c["column"]: c["rows"] for c in drift["columns"]} == {"a": 200, "b": 200}
        with TestClient(create_platform(settings), base_url="http://127.0.0.1") as portal:
            page = portal.get("/projects/default/deployments/sampled-api")
        assert page.status_code == 200, page.text
        assert "Reference: the sample logged with the model, 300 rows." in page.text

        # A table replaces the profile: counts kept against the sample's edges cannot be
        # added to counts against the table's, so the window's columns start again.
        table = pa.Table.from_pandas(_frame(700, seed=6))
        client.tables.append_records("default", "reference_rows", table)
        client.monitoring.set_reference("churn", logged, table="reference_rows")
        _serve(ctx, "sampled-api", logged, _frame(700, seed=6).iloc[::7])  # rows of the table
        monitor.tick()
        drift = _drift(client, "sampled-api")
        assert drift["source"] == "table reference_rows@0, first 700 rows"
        assert {c["column"]: c["rows"] for c in drift["columns"]} == {"a": 100, "b": 100}
        assert drift["drifted"] == []
        assert client.monitoring.windows("sampled-api")[0]["summary"]["usage"]["rows"] in (
            100,
            300,  # the same hour: usage still adds up
        )


def test_a_named_table_replaces_the_reference_and_drift_works_from_then_on(
    settings: Settings,
) -> None:
    with running(settings) as (url, ctx), Client(url) as client:
        version = _log_version(client, 5)
        reference = _frame(800, seed=3)
        client.tables.append_records("default", "reference_rows", pa.Table.from_pandas(reference))
        make_deployment(ctx, "named-api")
        monitor = Monitor(ctx.store, ctx.artifacts, settings.monitor)
        _serve(ctx, "named-api", version, _frame(150, seed=4, shift_b=2.0))
        monitor.tick()
        drift = _drift(client, "named-api")
        assert drift["status"] == "off"
        assert "a sample of 5 rows" in drift["reason"]

        stored = client.monitoring.set_reference("churn", version, table="reference_rows")
        assert stored["status"] == "ready"
        assert stored["source"] == "table reference_rows@0, first 800 rows"
        assert (stored["profile"]["origin"], stored["profile"]["rows"]) == ("table", 800)
        [event] = _set_events(ctx)
        assert event.subject == f"churn/{version}"
        assert event.payload == {
            "model": "churn",
            "version": version,
            "table": "reference_rows@0",
            "rows": 800,
            "target": None,
            "calibrated": False,
        }

        # The running monitor drops its cached verdict and judges new rows against it.
        _serve(ctx, "named-api", version, _frame(150, seed=5, shift_b=2.0))
        monitor.tick()
        drift = _drift(client, "named-api")
        assert drift["status"] == "ready"
        assert drift["source"] == "table reference_rows@0, first 800 rows"
        assert drift["drifted"] == ["b"]
        # Only the rows read against the table's profile are counted in its columns.
        assert {c["column"]: c["rows"] for c in drift["columns"]} == {"a": 150, "b": 150}

        # The CLI: shown, and set again from a pinned version.
        run = CliRunner().invoke(cli, ["--url", url, "models", "reference", f"churn/{version}"])
        assert run.exit_code == 0, run.output
        assert "reference from table reference_rows@0, first 800 rows (table, 800 rows)" in (
            " ".join(run.output.split())
        )
        client.tables.append_records("default", "reference_rows", pa.Table.from_pandas(reference))
        run = CliRunner().invoke(
            cli,
            ["--url", url, "models", "reference", "churn", "--table", "reference_rows@1"],
        )
        assert run.exit_code == 0, run.output
        assert "table reference_rows@1, first 1600 rows" in " ".join(run.output.split())
        assert len(_set_events(ctx)) == 2


def test_a_bad_reference_table_is_refused_and_nothing_is_stored(settings: Settings) -> None:
    with running(settings) as (url, ctx), Client(url) as client:
        version = _log_version(client, 300)
        before = client.monitoring.reference("churn", version)
        assert before["profile"]["origin"] == "logged_sample"
        client.tables.append_records(
            "default", "only_a", pa.Table.from_pandas(_frame(100)[["a"]].assign(c=1))
        )
        client.tables.append_records("default", "tiny", pa.Table.from_pandas(_frame(10)))

        with pytest.raises(NotFoundError, match="no reference table 'nowhere'"):
            client.monitoring.set_reference("churn", version, table="nowhere")
        with pytest.raises(NotFoundError, match="no version 7"):
            client.monitoring.set_reference("churn", version, table="tiny@7")
        with pytest.raises(ValidationError, match=r"lacks the model's input columns \['b'\]") as e:
            client.monitoring.set_reference("churn", version, table="only_a")
        assert e.value.details["missing"] == ["b"]
        with pytest.raises(ValidationError, match="has 10 rows: a reference needs at least 30"):
            client.monitoring.set_reference("churn", version, table="tiny")
        with pytest.raises(ValidationError, match="invalid table reference"):
            client.monitoring.set_reference("churn", version, table="not a table")
        with pytest.raises(NotFoundError):
            client.monitoring.set_reference("churn", version + 5, table="tiny")

        run = CliRunner().invoke(
            cli, ["--url", url, "models", "reference", f"churn/{version}", "--table", "only_a"]
        )
        assert run.exit_code != 0
        assert isinstance(run.exception, ValidationError)  # main() prints it as one line
        assert "lacks the model's input columns ['b']" in run.exception.message

        assert _set_events(ctx) == []
        after = get_reference(ctx.store, "default", "churn", version)
        assert after is not None
        assert after.source == before["source"]


def test_a_labelled_table_calibrates_the_reference_and_a_bad_target_is_refused(
    settings: Settings,
) -> None:
    with running(settings) as (url, ctx), Client(url) as client:
        version = _log_version(client, 300)
        assert client.monitoring.reference("churn", version)["profile"]["calibration"] is None
        frame = _frame(600, seed=7)
        labelled = frame.assign(label=(frame["a"] + frame["b"] > 0).astype(int))
        client.tables.append_records("default", "labelled", pa.Table.from_pandas(labelled))
        client.tables.append_records(
            "default", "few_labels", pa.Table.from_pandas(labelled.head(50))
        )

        with pytest.raises(ValidationError, match="has no label column 'truth'") as e:
            client.monitoring.set_reference("churn", version, table="labelled", target="truth")
        assert e.value.details["missing"] == ["truth"]
        assert client.monitoring.reference("churn", version)["profile"]["origin"] == (
            "logged_sample"
        )  # nothing stored on the error

        stored = client.monitoring.set_reference("churn", version, table="labelled", target="label")
        assert stored["source"] == (
            "table labelled@0, first 600 rows, calibrated on its 'label' labels"
        )
        calibration = stored["profile"]["calibration"]
        assert calibration["rows"] == 600
        assert calibration["kind"] == "positive"
        assert sum(b["rows"] for b in calibration["bins"]) == 600
        # The logistic model was fitted on the same rule, so its probabilities are close.
        assert calibration["ece"] < 0.1
        # The label column is not one of the profiled inputs.
        assert set(stored["profile"]["features"]) == {"a", "b"}
        assert _set_events(ctx)[-1].payload["calibrated"] is True

        few = client.monitoring.set_reference("churn", version, table="few_labels", target="label")
        assert few["profile"]["calibration"] is None
        assert few["source"].endswith("not calibrated ('label' holds under 100 labels)")

        run = CliRunner().invoke(
            cli, ["--url", url, "models", "reference", f"churn/{version}", "--target", "label"]
        )
        assert run.exit_code == 2
        assert "give --table too" in run.output


def test_a_target_for_a_regressor_measures_its_errors_by_prediction(settings: Settings) -> None:
    from sklearn.linear_model import LinearRegression

    with running(settings) as (url, _ctx), Client(url) as client:
        train = _frame(500)
        fitted = LinearRegression().fit(train, train["a"] * 2)
        with loopml.start_run("user-code", client=client) as run:
            run.log_model(fitted, sample=train.head(100))
        version = client.models.register_version("price", run_id=run.id).version
        # Labels off by 1 where a > 0 and exact elsewhere: the errors follow the prediction.
        labelled = train.assign(label=train["a"] * 2 + (train["a"] > 0))
        client.tables.append_records("default", "labelled", pa.Table.from_pandas(labelled))

        stored = client.monitoring.set_reference("price", version, table="labelled", target="label")

        errors = stored["profile"]["errors"]
        assert stored["source"].endswith("errors measured on its 'label' labels")
        assert stored["profile"]["calibration"] is None
        assert errors["rows"] == 500
        bins = errors["bins"]
        assert bins[0]["abs_error"] < 0.01
        assert bins[-1]["abs_error"] > 0.99
        assert set(stored["profile"]["features"]) == {"a", "b"}
