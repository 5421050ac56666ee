"""``loopml features``: the example of docs/features.md, run verbatim by bash against a
running platform, and what it printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .conftest import Platform

DOC = Path(__file__).resolve().parents[3] / "docs" / "features.md"


def _example() -> str:
    text = DOC.read_text()
    found = re.search(r"## Example \(runs verbatim\)\n\n```\n(.*?)```", text, re.S)
    assert found is not None, "docs/features.md lost its example"
    return found.group(1)


def test_docs_example_runs_verbatim(platform: Platform, tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "LOOPML_CLIENT_URL": platform.url,
        "LOOPML_HOME": str(tmp_path / "client-home"),
        "COLUMNS": "200",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "feature view user_stats applied as version 1" in done.stdout
    assert "dataset churn_train created version 1: 4 rows" in done.stdout
    assert "2 entities written" in done.stdout
    printed = json.loads(done.stdout[done.stdout.rindex('{\n  "entity"') :])
    # The online store applies the TTL against the clock: January's values are expired.
    assert (printed["status"], printed["values"]) == ("expired", None)
    assert printed["event_time"].startswith("2026-01-04")
    with platform.client() as client:
        rows = client.datasets.read("default", "churn_train").to_pylist()
    got = sorted((r["user_id"], r["event_time"].day, r["spend"]) for r in rows)
    assert got == [(1, 3, 10.0), (1, 5, 11.0), (2, 2, 20.0), (2, 6, None)]

    again = platform.cli("features", "apply", str(tmp_path / "features.yaml"))
    assert "unchanged at version 1" in again.stdout
    listed = platform.cli("features", "list")
    assert "user_stats" in listed.stdout
    shown = platform.cli("features", "show", "user_stats")
    assert "ttl 2d" in shown.stdout
    assert "spend, visits" in shown.stdout


def test_loopml_train_uses_a_training_set(platform: Platform, tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    n = 80
    stats = {"user_id": list(range(n)), "ts": [t0] * n, "spend": [float(i) for i in range(n)]}
    labels = {
        "user_id": list(range(n)),
        "event_time": [t0 + timedelta(days=1)] * n,
        "label": [int(i > 40) for i in range(n)],
    }
    pq.write_table(pa.table(stats), tmp_path / "stats.parquet")
    pq.write_table(pa.table(labels), tmp_path / "labels.parquet")
    assert platform.cli("ingest", str(tmp_path / "stats.parquet"), "-t", "spend").exit_code == 0
    assert platform.cli("ingest", str(tmp_path / "labels.parquet"), "-t", "churn").exit_code == 0
    spec = tmp_path / "spend.yaml"
    spec.write_text(
        "name: spend_view\nentities: [user_id]\nevent_time: ts\nttl: 7d\nsource: spend\n"
        "features: [spend]\n"
    )
    assert platform.cli("features", "apply", str(spec)).exit_code == 0
    made = platform.cli(
        "features",
        "training-set",
        "churn_set",
        "--entities",
        "churn",
        "--views",
        "spend_view",
        "--eval-fraction",
        "0.25",
    )
    assert "dataset churn_set created version 1: 80 rows" in made.stdout, made.stdout
    labelled = platform.cli(
        "datasets", "create", "churn_labels", "--from", "churn", "--split", "0.25"
    )
    assert labelled.exit_code == 0, labelled.stdout
    from_dataset = platform.cli(
        "features",
        "training-set",
        "churn_eval",
        "--entities-dataset",
        "churn_labels@1",
        "--entities-part",
        "eval",
        "--views",
        "spend_view",
    )
    assert from_dataset.exit_code == 0, from_dataset.output
    assert "dataset churn_eval created version 1: 20 rows" in from_dataset.stdout
    trained = platform.cli(
        "train",
        "-d",
        "churn_set",
        "-y",
        "label",
        "--task",
        "classification",
        "--budget",
        "3",
        "--max-iter",
        "1",
        "--estimators",
        "lgbm",
    )
    assert trained.exit_code == 0, trained.stdout
    assert "churn_set@1" in trained.stdout
