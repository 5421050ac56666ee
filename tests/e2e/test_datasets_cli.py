"""``loopml datasets`` against a real ``loopml up``: create with a split, show, list, split
again, download, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from .conftest import RunningServer

pytestmark = pytest.mark.e2e


def test_snapshot_split_and_download_with_the_cli(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "churn.csv"
    rows = "".join(f"{i},{i % 2},{i * 2.5},2024-01-{1 + i % 28:02d}\n" for i in range(40))
    path.write_text("id,label,spend,day\n" + rows)
    assert server.cli("ingest", str(path), "--table", "churn").returncode == 0
    made = server.cli(
        "datasets", "create", "churn_ds", "--from", "SELECT * FROM churn WHERE id < 30",
        "--split", "0.2", "--stratify", "label", "--seed", "7",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "created churn_ds@1: 30 rows" in made.stdout
    assert "sources: churn@0" in made.stdout
    assert "train 24 rows" in made.stdout
    assert "eval 6 rows" in made.stdout
    again = server.cli(
        "datasets", "create", "churn_ds", "--from", "SELECT * FROM churn WHERE id < 30", "--json"
    )
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert (answer["created"], answer["version"]) == (False, 1)
    eval_hash = answer["split"]["eval_hash"]

    listed = server.cli("datasets", "list")
    assert "churn_ds" in listed.stdout
    assert eval_hash[:12] in listed.stdout
    versions = server.cli("datasets", "show", "churn_ds")
    assert "1 version(s)" in versions.stdout
    shown = server.cli("datasets", "show", "churn_ds@1")
    assert shown.returncode == 0, shown.stderr
    assert f"eval hash: {eval_hash}" in shown.stdout
    assert "spend" in shown.stdout
    assert "72.5" in shown.stdout
    assert "[day]" in shown.stdout  # date32[day], printed as text and not taken for markup

    refused = server.cli("datasets", "split", "churn_ds@1", "--eval-fraction", "0.5")
    assert refused.returncode == 1
    assert "already has a frozen split" in refused.stderr
    bad = server.cli("datasets", "show", "churn_ds@0")
    assert bad.returncode == 1
    assert "invalid dataset reference" in bad.stderr

    out = tmp_path / "eval.parquet"
    done = server.cli("datasets", "download", "churn_ds@1", "--part", "eval", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).num_rows == 6
    assert server.cli("datasets", "delete", "churn_ds", "--yes").returncode == 0
    assert server.cli("datasets", "show", "churn_ds").returncode == 1
