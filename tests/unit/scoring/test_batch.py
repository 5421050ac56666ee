"""Batch scoring: a registered model (trained here, logged and registered through the real
SDK) scores a lake table and a CSV file, through the library, the API, the SDK and the CLI;
the output equals the serving runtime's predictions row for row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import loopml
from loopml.cli.main import app as cli
from loopml.client import Client
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.predictions import BatchResult
from loopml.data import lake
from loopml.faces.context import AppContext
from loopml.registry.packages import fetch_package
from loopml.scoring.batch import score_table
from loopml.serve import ModelRuntime, load_runtime
from tests.unit.conftest import mixed_frame, records
from tests.unit.predictions.test_predlog_http import Platform, serve_platform

INPUT = "customers"


@dataclass
class Setup:
    platform: Platform
    ctx: AppContext
    frame: pd.DataFrame  # the input table's rows: the model's columns plus customer_id
    runtime: ModelRuntime  # the registered version, loaded as serving loads it

    def client(self) -> Client:
        return Client(self.platform.url, timeout=120)

    def output(self, table: str) -> pa.Table:
        return lake.read_dataset(self.ctx.store, self.ctx.artifacts, "default", table).to_table()

    def expected(self, frame: pd.DataFrame) -> Any:
        columns = self.runtime.columns_from_instances(records(frame[self.runtime.input_names]))
        return self.runtime.predict(columns)


def _pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer(
        [
            ("num", numeric, ["age years", "income(k)", "visits"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("flag", "passthrough", ["active"]),
        ]
    )
    frame, target = mixed_frame()
    return Pipeline([("columns", columns), ("model", LogisticRegression())]).fit(frame, target)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("batch")
    with serve_platform(home / "platform") as platform, Client(platform.url) as client:
        frame, _ = mixed_frame()
        with loopml.start_run("churn", client=client) as run:
            run.log_model(_pipeline(), sample=frame)
        version = client.models.register_version("churn", run_id=run.id)
        assert version.version == 1
        table = frame.assign(customer_id=np.arange(len(frame), dtype=np.int64))
        client.tables.append_records("default", INPUT, pa.Table.from_pandas(table))
        ctx: AppContext = platform.counter.app.state.running.context  # type: ignore[attr-defined]
        _, path = fetch_package(ctx.store, ctx.artifacts, "default", "churn/1", home / "pkg")
        runtime = load_runtime(path, manifest_sha256=version.manifest_sha256)
        assert runtime.format == "onnx"
        yield Setup(platform, ctx, table, runtime)


def _check_output(setup: Setup, output: pa.Table, frame: pd.DataFrame) -> None:
    # A lake table is a set of rows: the writer may store batches in any order.
    output = output.sort_by("customer_id")
    assert output.num_rows == len(frame)
    for name in frame.columns:
        got = output.column(name).to_pandas()
        pd.testing.assert_series_equal(
            got, frame[name].reset_index(drop=True), check_names=False, check_dtype=False
        )
    expected = setup.expected(frame)
    assert output.column("prediction").to_pylist() == expected.predictions.tolist()
    probabilities = np.array(output.column("probabilities").to_pylist())
    np.testing.assert_allclose(probabilities, expected.probabilities, rtol=1e-6)
    assert set(output.column("model").to_pylist()) == {"churn"}
    assert set(output.column("model_version").to_pylist()) == {1}
    ids = output.column("inference_id").to_pylist()
    assert len(set(ids)) == len(ids)


def test_a_table_scored_in_chunks_equals_the_runtime_row_for_row(
    setup: Setup, tmp_path: Path
) -> None:
    seen: list[int] = []
    result = score_table(
        setup.ctx.store,
        setup.ctx.artifacts,
        "default",
        model="churn/1",
        input=INPUT,
        output="scored_chunks",
        workdir=tmp_path,
        actor="test",
        chunk_rows=64,
        progress=seen.append,
    )

    assert (result.rows, result.model, result.version, result.output_version) == (
        300,
        "churn",
        1,
        0,
    )
    assert result.classes == ["churn", "stay"]
    assert seen == [64, 128, 192, 256, 300]
    output = setup.output("scored_chunks")
    _check_output(setup, output, setup.frame)
    assert output.schema.names == [
        *setup.frame.columns,
        "prediction",
        "probabilities",
        "inference_id",
        "model",
        "model_version",
    ]
    types = {f.name: f.type for f in output.schema}
    assert (types["prediction"], types["probabilities"]) == (pa.string(), pa.list_(pa.float64()))
    assert (types["inference_id"], types["model_version"]) == (pa.string(), pa.int64())
    assert list(tmp_path.iterdir()) == []  # the package's files are gone


def test_the_api_scores_a_table_version_with_a_deployments_model(setup: Setup) -> None:
    from tests.unit.api.test_feedback import make_deployment

    make_deployment(setup.ctx, "churn-batch")
    with setup.client() as client:
        client.tables.append_records("default", "versioned", pa.Table.from_pandas(setup.frame))
        client.tables.append_records(
            "default", "versioned", pa.Table.from_pandas(setup.frame.iloc[:5])
        )
        result = client.predictions.batch("versioned@0", "scored_api", deployment="churn-batch")
        again = client.predictions.batch(
            "versioned@0", "scored_api", model="churn", mode="overwrite"
        )
        latest = client.predictions.batch("versioned", "scored_latest", model="churn/1")

    assert (result.rows, result.version, again.output_version, latest.rows) == (300, 1, 1, 305)
    _check_output(setup, setup.output("scored_api"), setup.frame)


def test_the_predict_batch_route_answers_201_and_refuses_unreadable_bodies(
    setup: Setup,
) -> None:
    url = f"{setup.platform.url}/api/v1/projects/default/predict-batch"
    refused = [
        {"input": INPUT, "output": "refused"},  # neither a model nor a deployment
        {"input": INPUT, "output": "refused", "model": "churn/1", "deployment": "churn-x"},
        {"input": INPUT, "output": "refused", "model": "churn/1", "rows": 3},
        {"input": INPUT, "output": "Refused", "model": "churn/1"},
    ]
    with httpx.Client(timeout=120) as http:
        answers = [http.post(url, json=body) for body in refused]
        scored = http.post(url, json={"input": INPUT, "output": "scored_raw", "model": "churn/1"})

    assert [a.status_code for a in answers] == [422] * len(refused)
    with pytest.raises(NotFoundError):
        setup.output("refused")
    assert scored.status_code == 201, scored.text
    result = BatchResult.model_validate(scored.json())
    assert (result.rows, result.output, result.model, result.version) == (
        300,
        "scored_raw",
        "churn",
        1,
    )
    _check_output(setup, setup.output("scored_raw"), setup.frame)
    workdir = setup.ctx.settings.home / "tmp" / "batch"  # the route's scratch folder
    assert not workdir.exists() or list(workdir.iterdir()) == []


def test_a_csv_file_through_the_cli_equals_the_runtime(setup: Setup, tmp_path: Path) -> None:
    csv = tmp_path / "customers.csv"
    setup.frame.to_csv(csv, index=False)

    run = CliRunner().invoke(
        cli,
        [
            "--url",
            setup.platform.url,
            "predict",
            "--model",
            "churn/1",
            "--input",
            str(csv),
            "--output",
            "scored_csv",
        ],
    )

    assert run.exit_code == 0, run.output
    assert "scored 300 rows with churn version 1 into scored_csv" in run.output
    _check_output(setup, setup.output("scored_csv"), setup.frame)
    with setup.client() as client:
        names = [t.name for t in client.tables.list("default")]
    assert not [n for n in names if "__input_" in n]  # the staging table is deleted


def test_a_file_through_the_library_and_a_table_through_the_cli(
    setup: Setup, tmp_path: Path
) -> None:
    parquet = tmp_path / "rows.parquet"
    setup.frame.iloc[:50].to_parquet(parquet, index=False)
    result = score_table(
        setup.ctx.store,
        setup.ctx.artifacts,
        "default",
        model="churn/1",
        input=parquet,
        output="scored_file",
        workdir=tmp_path / "work",
        actor="test",
    )
    assert result.rows == 50
    _check_output(setup, setup.output("scored_file"), setup.frame.iloc[:50])

    run = CliRunner().invoke(
        cli,
        [
            "--url",
            setup.platform.url,
            "predict",
            "-m",
            "churn",
            "-i",
            INPUT,
            "-o",
            "scored_cli",
            "--json",
        ],
    )
    assert run.exit_code == 0, run.output
    assert '"rows": ' in run.output


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"model": "churn/1", "input": "nothing"}, NotFoundError, "table 'nothing' not found"),
        ({"model": "churn/9", "input": INPUT}, NotFoundError, "version 9"),
        ({"model": "other", "input": INPUT}, NotFoundError, "other"),
        ({"deployment": "nowhere", "input": INPUT}, NotFoundError, "deployment 'nowhere'"),
        ({"input": INPUT}, ValidationError, "either a model"),
        ({"model": "churn/1", "deployment": "x", "input": INPUT}, ValidationError, "not both"),
        ({"model": "churn/1", "input": "customers@@1"}, ValidationError, "invalid table ref"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(
    setup: Setup, tmp_path: Path, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        score_table(
            setup.ctx.store,
            setup.ctx.artifacts,
            "default",
            output="refused",
            workdir=tmp_path,
            actor="test",
            **arguments,
        )
    with pytest.raises(NotFoundError):
        setup.output("refused")


def test_missing_colliding_and_bad_columns_are_422_naming_them(
    setup: Setup, tmp_path: Path
) -> None:
    with setup.client() as client:
        client.tables.append_records(
            "default", "lacking", pa.Table.from_pandas(setup.frame.drop(columns=["plan", "visits"]))
        )
        with pytest.raises(
            ValidationError, match=r"lacks the model's column\(s\) \['visits', 'plan'\]"
        ):
            client.predictions.batch("lacking", "refused", model="churn/1")
        client.tables.append_records(
            "default", "colliding", pa.Table.from_pandas(setup.frame.assign(prediction=1))
        )
        with pytest.raises(ValidationError, match=r"\['prediction'\] named like"):
            client.predictions.batch("colliding", "refused", model="churn/1")
    frame = setup.frame.astype({"visits": np.float64})
    frame.loc[200, "visits"] = 2.5  # an integer column with a fraction, in the 4th chunk of 64
    with setup.client() as client:
        client.tables.append_records("default", "fractional", pa.Table.from_pandas(frame))
        kept = client.predictions.batch(f"{INPUT}@0", "kept", model="churn/1")

    def score(output: str, mode: str = "append") -> None:
        with pytest.raises(ValidationError, match=r"column 'visits' \(integer\): row 200 has 2.5"):
            score_table(
                setup.ctx.store,
                setup.ctx.artifacts,
                "default",
                model="churn/1",
                input="fractional",
                output=output,
                workdir=tmp_path,
                actor="test",
                chunk_rows=64,
                mode=mode,
            )

    score("refused")
    with pytest.raises(NotFoundError):  # nothing landed, and no empty table is left
        setup.output("refused")
    score("kept", "overwrite")  # fails in its 4th chunk: the table keeps its rows
    table = lake.get_table(setup.ctx.store, setup.ctx.artifacts, "default", "kept")
    assert (table.version, table.row_count) == (kept.output_version, 300)
