"""Reference profiles of registered versions: built from the training split when a version
becomes ready (the monitor's round), on demand for older ones, and ``off`` with its reason
when none can be built."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from loopml.client import Client
from loopml.core.datasets import SplitSpec
from loopml.data import datasets, lake
from loopml.monitor.engine import Monitor
from loopml.monitor.reference import Reference, profile_table
from loopml.monitor.reference_store import ensure_reference, get_reference, save_reference
from loopml.monitor.sketch import NumericReference
from loopml.platform import create_api_app
from loopml.registry import register_version
from loopml.sdk.training import train_model
from loopml.settings import Settings
from loopml.store import monitor as monitor_rows
from loopml.wiring import open_artifact_store, open_metadata_store
from tests.tracking_rows import log_model, make_run

FIT = """
from sklearn.linear_model import LogisticRegression

def fit(ctx):
    features = ctx.train.drop(columns=[ctx.target])
    return LogisticRegression(max_iter=2000).fit(features, ctx.train[ctx.target])


def fit_regressor(ctx):
    from sklearn.linear_model import LinearRegression

    features = ctx.train.drop(columns=[ctx.target])
    return LinearRegression().fit(features, ctx.train[ctx.target])
"""


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings()
    store = open_metadata_store(settings)
    store.upgrade()
    frame = load_breast_cancer(as_frame=True).frame.iloc[:, [0, 1, 2, 30]]
    frame.columns = ["f0", "f1", "f2", "y"]
    artifacts = open_artifact_store(settings)
    lake.ingest_arrow(store, artifacts, "default", "cancer", pa.Table.from_pandas(frame), actor="t")
    split = SplitSpec(eval_fraction=0.25, seed=7, stratify="y")
    datasets.create_version(store, artifacts, "default", "snap", "cancer", split=split, actor="t")
    store.dispose()
    (tmp_path / "usercode").mkdir()
    (tmp_path / "usercode" / "simple_fit.py").write_text(textwrap.dedent(FIT))
    monkeypatch.syspath_prepend(str(tmp_path / "usercode"))
    return settings


def test_a_version_gets_its_reference_from_its_training_split(settings: Settings) -> None:
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    monitor = Monitor(store, artifacts, settings.monitor)
    monitor.tick()  # from now on it follows model.version.ready
    trained = train_model(
        "snap",
        target="y",
        task="classification",
        entrypoint="simple_fit:fit",
        register_as="cancer",
        settings=settings,
    )
    assert trained.version is not None
    assert trained.version.version == 1
    assert get_reference(store, "default", "cancer", 1) is None
    monitor.tick()
    reference = get_reference(store, "default", "cancer", 1)
    assert reference is not None
    assert reference.status == "ready", reference
    assert reference.source == "dataset snap@1, train split"
    profile = reference.profile
    assert profile is not None
    assert profile.task == "classification"
    train_rows = datasets.read_version(store, artifacts, "default", "snap", "train").num_rows
    assert profile.rows == train_rows < 569
    assert sorted(profile.features) == ["f0", "f1", "f2"]
    f0 = profile.features["f0"]
    assert isinstance(f0, NumericReference)
    assert f0.rows == train_rows
    assert f0.exact
    assert profile.prediction is not None
    assert profile.prediction.kind == "categorical"
    # The calibration of the positive class's score on the eval split, against its labels.
    eval_rows = datasets.read_version(store, artifacts, "default", "snap", "eval")
    table = profile.calibration
    assert table is not None
    assert (table.kind, table.positive, table.rows) == ("positive", "1", eval_rows.num_rows)
    assert 5 <= len(table.bins) <= 10
    assert sum(b.rows for b in table.bins) == eval_rows.num_rows
    assert all(b.lower <= b.predicted <= b.upper for b in table.bins)
    gaps = sum(b.rows * abs(b.observed - b.predicted) for b in table.bins)
    assert table.ece == pytest.approx(gaps / table.rows)
    positives = sum(b.rows * b.observed for b in table.bins)
    assert positives == pytest.approx(sum(eval_rows["y"].to_pylist()))
    store.dispose()


def test_the_reference_api_shows_the_calibration_table(settings: Settings) -> None:
    trained = train_model(
        "snap",
        target="y",
        task="classification",
        entrypoint="simple_fit:fit",
        register_as="cancer",
        settings=settings,
    )
    assert trained.version is not None
    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        shown = Client(http=http).monitoring.reference("cancer", 1)  # built on this request
        store = http.app.state.running.context.store  # type: ignore[attr-defined]
        stored = get_reference(store, "default", "cancer", 1)
    assert stored is not None
    assert stored.profile is not None
    assert stored.profile.calibration is not None
    table = shown["profile"]["calibration"]
    assert table == stored.profile.calibration.model_dump(mode="json")
    assert table["kind"] == "positive"
    assert 0 <= table["ece"] < 0.5
    assert [set(b) for b in table["bins"]] == [
        {"lower", "upper", "rows", "predicted", "observed"}
    ] * len(table["bins"])


def test_a_profile_stored_before_the_table_existed_still_loads(settings: Settings) -> None:
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    run = make_run(store)
    log_model(store, artifacts, run)
    register_version(
        store, artifacts, project="default", model_name="churn", run_id=run.id, actor="t"
    )
    profile = profile_table(
        pa.table({"a": [1.0, 2.0]}), {"a": "numeric"}, task="classification", classes=["0", "1"]
    ).model_dump()
    del profile["calibration"]  # as profiles were stored before
    with store.session() as session:
        monitor_rows.put_reference(
            session, "default", "churn", 1, status="ready", reason="", source="s", profile=profile
        )
    stored = ensure_reference(store, artifacts, "default", "churn", 1)
    assert stored.profile is not None
    assert stored.profile.calibration is None
    assert stored.profile.features["a"].rows == 2
    store.dispose()


def test_a_version_without_a_dataset_or_a_readable_sample_has_drift_off_and_says_why(
    settings: Settings,
) -> None:
    # (A real model logged with a small sample: test_reference_sources.)
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    run = make_run(store)
    log_model(store, artifacts, run)  # a package whose manifest loopml cannot load
    register_version(
        store, artifacts, project="default", model_name="churn", run_id=run.id, actor="t"
    )
    reference = ensure_reference(store, artifacts, "default", "churn", 1)
    assert reference.status == "off"
    assert reference.profile is None
    assert "no reference could be built: loopml-model.json is not a valid" in reference.reason
    stored = get_reference(store, "default", "churn", 1)
    assert stored is not None
    assert stored.reason == reference.reason
    store.dispose()


def test_a_reference_built_on_its_own_never_replaces_one_stored_meanwhile(
    settings: Settings,
) -> None:
    # ensure_reference reads none, builds one (seconds, for a real model), then stores it
    # with replace=False: a table reference set in between (census run 40: the user's
    # `models reference --table` while the monitor built its own) stays.
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    run = make_run(store)
    log_model(store, artifacts, run)
    register_version(
        store, artifacts, project="default", model_name="churn", run_id=run.id, actor="t"
    )
    built = ensure_reference(store, artifacts, "default", "churn", 1)  # "off": no sample
    profile = profile_table(
        pa.table({"a": [1.0, 2.0]}), {"a": "numeric"}, task="classification", classes=["0", "1"]
    )
    chosen = Reference(status="ready", source="table training@0", profile=profile)
    save_reference(store, "default", "churn", 1, chosen)  # as set_reference_table stores it
    save_reference(store, "default", "churn", 1, built, replace=False)  # the late one
    stored = get_reference(store, "default", "churn", 1)
    assert stored is not None
    assert (stored.status, stored.source) == ("ready", "table training@0")
    save_reference(store, "default", "churn", 1, built)  # a replacing save does replace
    assert get_reference(store, "default", "churn", 1) == built
    store.dispose()


def test_a_regressor_s_reference_holds_its_eval_errors_by_prediction(settings: Settings) -> None:
    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    trained = train_model(
        "snap",
        target="f2",
        task="regression",
        entrypoint="simple_fit:fit_regressor",
        register_as="perimeter",
        settings=settings,
    )
    assert trained.version is not None
    reference = ensure_reference(store, artifacts, "default", "perimeter", 1)
    assert reference.status == "ready", reference
    assert reference.profile is not None
    assert reference.profile.calibration is None
    table = reference.profile.errors
    assert table is not None
    eval_rows = datasets.read_version(store, artifacts, "default", "snap", "eval")
    assert table.rows == eval_rows.num_rows
    assert sum(b.rows for b in table.bins) == eval_rows.num_rows
    assert all(b.lower <= b.predicted <= b.upper for b in table.bins)
    # The table's overall figures are the eval set's: the evaluation's own, computed apart.
    assert trained.evaluation is not None
    assert table.mae == pytest.approx(trained.evaluation.metrics["mae"], rel=1e-6)
    assert table.rmse == pytest.approx(trained.evaluation.metrics["rmse"], rel=1e-6)
    store.dispose()
