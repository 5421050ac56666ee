"""Every list command against a real platform: ``-o json`` parses, ``-o csv`` has its header
and a row per item, and the default table fits an 80-column terminal with its first
columns whole (a table that folded every cell to fit would cut the names and ids)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import pytest

from loopml.core.gate import EvaluationReport
from tests.tracking_rows import log_model, make_run

from .conftest import COLUMNS, Platform, make_deployment

PROJECT = "churn"
LONG = "a description long enough to need a terminal of its own, " * 2
SPEC = """\
name: retrain_the_churn_model
description: retrain the churn model on the newest customers, then judge it
steps:
  - {name: a, python: "m:f"}
"""


@dataclass(frozen=True)
class Seeded:
    run_id: str
    pipeline_run_id: str


def _seed(platform: Platform) -> Seeded:
    with platform.client() as client:
        client.projects.create(PROJECT, LONG)
        client.experiments.create("retention_experiment", project=PROJECT, description=LONG)
        run = make_run(platform.ctx.store, PROJECT)
        log_model(platform.ctx.store, platform.ctx.artifacts, run)
        client.models.create("cancer", description=LONG, project=PROJECT)
        client.models.register_version("cancer", run_id=run.id, project=PROJECT)
        report = EvaluationReport(
            eval_hash="ab" * 32,
            task="classification",
            primary_metric="roc_auc",
            metrics={"roc_auc": 0.91, "accuracy": 0.88, "f1": 0.87, "log_loss": 0.31},
            rows=40,
            dataset="customers_snap@1",
        )
        client.models.save_evaluation("cancer", 1, report, project=PROJECT)
        make_deployment(platform, PROJECT)
        client.monitoring.create_alert(
            "slow_p95",
            deployment="churn-api",
            metric="latency_p95_ms",
            comparator=">",
            threshold=50,
            project=PROJECT,
        )
        rows = [{"customer": f"customer-{i:04d}", "note": LONG, "spend": i * 1.5} for i in range(3)]
        client.tables.append_records(PROJECT, "customers", rows)
        client.datasets.create(PROJECT, "customers_snap", "customers")
        client.transforms.apply(
            PROJECT, "big_spenders", sql="SELECT * FROM customers WHERE spend > 1", into="big"
        )
        client.artifacts.upload(PROJECT, b"x" * 10, "reports/2026/summary-of-the-quarter.csv")
        client.pipelines.apply(SPEC, project=PROJECT)
        queued = client.pipelines.run("retrain_the_churn_model", project=PROJECT)
        client.schedules.create(
            "nightly", pipeline="retrain_the_churn_model", cron="0 3 * * *", project=PROJECT
        )
        client.triggers.create(
            "on_new_customers",
            pipeline="retrain_the_churn_model",
            on="table.appended",
            where={"table": "customers"},
            project=PROJECT,
        )
        client.streams.create(
            "orders-in",
            source="nats://127.0.0.1:4222",
            subject="orders.*",
            table="orders",
            project=PROJECT,
        )
    return Seeded(run.id, queued.id)


@pytest.fixture(scope="module")
def seeded(platform: Platform) -> Seeded:
    return _seed(platform)


# (the command, the cell that must show whole in the default table: "{run}" and
# "{pipeline_run}" stand for the seeded ids; None where nothing was seeded).
LISTS = [
    (["projects", "list"], PROJECT),
    (["experiments", "list"], "retention_experiment"),
    (["runs", "list"], "{run}"),
    (["models", "list"], "cancer"),
    (["models", "versions", "cancer"], "READY"),
    (["models", "evaluations", "cancer/1"], "customers_snap@1"),
    (["deployments", "list"], "churn-api"),
    (["alerts", "list"], "slow_p95"),
    (["tables", "list"], "customers"),
    (["tables", "head", "customers"], "customer-0001"),
    (["tables", "history", "customers"], "WRITE"),
    (["tables", "reports", "customers"], None),
    (["datasets", "list"], "customers_snap"),
    (["transforms", "list"], "big_spenders"),
    (["artifacts", "ls"], "reports/2026/summary-of-the-quarter.csv"),
    (["pipelines", "list"], "retrain_the_churn_model"),
    (["pipelines", "runs"], "{pipeline_run}"),
    (["schedules", "list"], "nightly"),
    (["triggers", "list"], "on_new_customers"),
    (["streams", "list"], "orders-in"),
    (["events", "-n", "20"], "schedule.created"),
]


def _key(key: str | None, seeded: Seeded) -> str | None:
    if key is None:
        return None
    return key.format(run=seeded.run_id, pipeline_run=seeded.pipeline_run_id)


@pytest.mark.parametrize(("command", "key"), LISTS, ids=[" ".join(c) for c, _ in LISTS])
def test_a_list_prints_json_csv_and_a_table_that_fits(
    platform: Platform, seeded: Seeded, command: list[str], key: str | None
) -> None:
    env = {"LOOPML_PROJECT": PROJECT}
    whole = _key(key, seeded)

    as_json = platform.cli(*command, "-o", "json", env=env)
    assert as_json.exit_code == 0, as_json.output
    items = json.loads(as_json.stdout)
    assert isinstance(items, list)
    assert (len(items) > 0) == (whole is not None)

    as_csv = platform.cli(*command, "-o", "csv", env=env)
    assert as_csv.exit_code == 0, as_csv.output
    header, *rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert all(header), as_csv.stdout
    assert header[0] != ""
    assert len(rows) == len(items)

    shown = platform.cli(*command, env=env)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= COLUMNS, shown.stdout
    assert header[0] in lines[1], shown.stdout  # the header row, with the first column
    if whole is not None:
        assert any(whole in line for line in lines), shown.stdout

    wide = platform.cli(*command, "--wide", env=env)
    assert wide.exit_code == 0, wide.output
    assert "more column(s)" not in wide.stderr
    if "more column(s)" in shown.stderr:  # what the table left out, --wide shows
        left_out = shown.stderr.split(": ", 1)[1].split(";")[0].split(", ")
        assert all(name.split()[0] in wide.stdout for name in left_out), wide.stdout


def test_json_is_the_full_objects_and_csv_the_shown_columns(
    platform: Platform, seeded: Seeded
) -> None:
    env = {"LOOPML_PROJECT": PROJECT}
    [rule] = json.loads(platform.cli("alerts", "list", "--json", env=env).stdout)
    assert (rule["name"], rule["threshold"], rule["project"]) == ("slow_p95", 50.0, PROJECT)
    text = platform.cli("alerts", "list", "-o", "csv", env=env).stdout
    assert text.splitlines()[0] == (
        "name,state,deployment,condition,severity,value,for/window,silenced until"
    )
    refused = platform.cli("alerts", "list", "-o", "yaml", env=env)
    assert refused.exit_code == 1
    assert "expected one of table, wide, json, csv" in str(refused.exception)
