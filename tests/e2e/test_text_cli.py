"""``loopml train --task text-classification`` from the shell against a real ``loopml up``:
a tiny fine-tune whose checkpoints, run and package go over HTTP, registered and
evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.text_data import TINY, reviews

from .conftest import RunningServer

pytest.importorskip("torch")
pytestmark = pytest.mark.e2e


def test_text_classification_from_the_shell(server: RunningServer, tmp_path: Path) -> None:
    reviews(160).to_csv(tmp_path / "reviews.csv", index=False)
    assert server.cli("ingest", str(tmp_path / "reviews.csv"), "--table", "reviews").returncode == 0
    made = server.cli(
        "datasets", "create", "reviews_snap", "--from", "reviews", "--split", "0.25",
        "--stratify", "sentiment",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    trained = server.cli(
        "train", "--dataset", "reviews_snap", "--target", "sentiment",
        "--task", "text-classification", "--method", "finetune", "--epochs", "10",
        "--checkpoint-every", "20", "--param", f"tiny={json.dumps(TINY)}",
        "--register", "sentiment", "--json",
        timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    outcome = json.loads(trained.stdout)
    assert outcome["model_format"] == "onnx"
    assert outcome["version"] == 1
    assert outcome["evaluation"]["metrics"]["accuracy"] >= 0.9
    listed = server.cli("artifacts", "ls", "checkpoints/", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [], "a finished training leaves no checkpoint"

    wrong = server.cli(
        "train", "--dataset", "reviews_snap", "--target", "sentiment",
        "--task", "text-classification", "--method", "magic",
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "invalid method 'magic'" in wrong.stderr
