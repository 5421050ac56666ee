"""``loopml train --json`` gives one outcome for every task: a tabular and a text run print
the same keys, each filled from what the run recorded (trials as child runs, the winner
and its score, the package's size)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer

from loopml.core.run_search import RunSearch
from tests.text_data import reviews, tiny_bert_folder

from .conftest import Platform

pytest.importorskip("torch")


def _dataset(platform: Platform, path: Path, table: str, stratify: str) -> None:
    ingested = platform.cli("ingest", str(path), "--table", table)
    assert ingested.exit_code == 0, ingested.output
    made = platform.cli(
        "datasets", "create", f"{table}_snap", "--from", table, "--split", "0.25",
        "--stratify", stratify,
    )  # fmt: skip
    assert made.exit_code == 0, made.output


def _train(platform: Platform, *args: str) -> dict[str, Any]:
    trained = platform.cli("train", *args, "--max-iter", "2", "--json")
    assert trained.exit_code == 0, trained.output
    outcome: dict[str, Any] = json.loads(trained.stdout)
    return outcome


def _check_against_the_run(platform: Platform, outcome: dict[str, Any], experiment: str) -> None:
    with platform.client() as client:
        run = client.runs.get(outcome["run_id"])
        # Asked by parent: the search folds child runs (trials) under their parent by default.
        found = client.runs.search(
            RunSearch(experiment=experiment, parent_run_id=outcome["run_id"], limit=1000)
        )
        models = client.runs.list_models(outcome["run_id"])
    children = [r for r in found.items if r.parent_run_id == outcome["run_id"]]
    params, metrics = run.params or {}, run.metrics or {}
    assert outcome["trials"] == len(children) == metrics["trials"] >= 1
    assert outcome["best_estimator"] == params["best_estimator"]
    # Refit on every row (bagging is asked for with --bagging), as the run recorded it.
    assert outcome["bagged_folds"] == 0
    assert params["bagged_folds"] == "0"
    assert outcome["best_score"] == pytest.approx(metrics[f"best_{params['metric']}"])
    assert outcome["package_mb"] == pytest.approx(models[0].summary["size_bytes"] / 1e6)
    assert outcome["package_mb"] > 0


def test_tabular_and_text_runs_report_the_same_outcome(platform: Platform, tmp_path: Path) -> None:
    cancer = load_breast_cancer(as_frame=True).frame.iloc[:300, [0, 1, 2, 3, 30]]
    cancer.columns = ["f0", "f1", "f2", "f3", "y"]
    cancer.to_csv(tmp_path / "cancer.csv", index=False)
    _dataset(platform, tmp_path / "cancer.csv", "cancer", "y")
    reviews(160).to_csv(tmp_path / "reviews.csv", index=False)
    _dataset(platform, tmp_path / "reviews.csv", "reviews", "sentiment")
    bert = tiny_bert_folder(tmp_path / "bert")

    tabular = _train(
        platform, "--dataset", "cancer_snap", "--target", "y", "--task", "classification",
        "--budget", "10",
    )  # fmt: skip
    text = _train(
        platform, "--dataset", "reviews_snap", "--target", "sentiment",
        "--task", "text-classification", "--method", "embeddings", "--base", str(bert),
        "--text-column", "review", "--budget", "30",
    )  # fmt: skip

    assert set(text) == set(tabular)
    _check_against_the_run(platform, tabular, "cancer_snap")
    _check_against_the_run(platform, text, "reviews_snap")
    assert text["used_columns"] == ["review"]
    assert set(text["excluded_columns"]) == {"stars"}


def test_the_text_table_shows_the_winner_trials_and_package(
    platform: Platform, tmp_path: Path
) -> None:
    reviews(160).to_csv(tmp_path / "reviews.csv", index=False)
    _dataset(platform, tmp_path / "reviews.csv", "shown", "sentiment")
    bert = tiny_bert_folder(tmp_path / "bert")
    trained = platform.cli(
        "train", "--dataset", "shown_snap", "--target", "sentiment",
        "--task", "text-classification", "--method", "embeddings", "--base", str(bert),
        "--estimators", "lrl1", "--max-iter", "2", "--budget", "30",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    lines = {
        line.split("│")[1].strip(): line for line in trained.stdout.splitlines() if "│" in line
    }
    assert "lrl1" in lines["best"]
    assert lines["trials"].split("│")[2].strip() == "2"
    assert "MB" in lines["package"]
    assert "review" in lines["columns used"]
