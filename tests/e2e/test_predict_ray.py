"""``on: ray`` batch scoring through a real ``loopml up``: ``loopml predict --on ray`` and the
API's ``"on": "ray"`` score a table written in three appends on a real Ray cluster
(``ray_cluster``, the server's ``worker.executor``) into the rows, scores included, that the
local path gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml.client import Client
from tests.ray_cluster import RayCluster
from tests.unit.deploy.deploy_support import cancer_frame
from tests.waiting import eventually

from .conftest import RunningServer, log_cancer_model, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.ray]

FILES = 3


def _ok(server: RunningServer, *args: str) -> str:
    done = server.cli(*args, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _rows(client: Client, table: str) -> list[dict[str, Any]]:
    """The output's rows in input order: by the row number that ends each inference id."""
    rows = client.sql("default", f"SELECT * FROM {table}", limit=10_000).records()
    numbers = [int(row.pop("inference_id").rsplit("-", 1)[1]) for row in rows]
    assert sorted(numbers) == list(range(len(rows)))
    return [row for _, row in sorted(zip(numbers, rows, strict=True), key=lambda p: p[0])]


def _scoring_actors(cluster: RayCluster) -> int:
    """How many Ray worker processes of the cluster have run a batch-scoring actor (Ray
    writes ``:actor_name:ScoringActor`` into the process's log when the actor starts)."""
    return sum(
        ":actor_name:ScoringActor" in log.read_text(errors="replace")
        for log in cluster.folder.glob("session_*/logs/worker-*.out")
    )


def _more_actors(cluster: RayCluster, before: int) -> int:
    return eventually(
        lambda: (now := _scoring_actors(cluster)) > before and now,
        60,
        f"a scoring actor on the Ray cluster (more than {before})",
        interval_s=0.1,
    )


def test_predict_on_ray_from_the_cli_and_the_api_scores_as_locally(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    executor = json.dumps({"type": "ray", "address": ray_cluster.address})
    home = tmp_path / "home"
    home.mkdir()
    with (
        running_server(home, {"LOOPML_WORKER_EXECUTOR": executor}) as server,
        Client(server.url) as client,
    ):
        log_cancer_model(server, tmp_path / "package")
        client.models.set_alias("cancer", "prod", 1)
        frame, _ = cancer_frame()
        step = -(-len(frame) // FILES)
        for start in range(0, len(frame), step):  # one Delta file per ingest
            part = tmp_path / f"part{start}.csv"
            frame.iloc[start : start + step].to_csv(part, index=False)
            client.tables.ingest_file("default", "patients", part)

        common = ("predict", "--input", "patients", "--model", "cancer@prod", "--json")
        local = json.loads(_ok(server, *common, "--output", "local_out"))
        actors = _scoring_actors(ray_cluster)
        by_cli = json.loads(_ok(server, *common, "--output", "cli_out", "--on", "ray"))
        actors = _more_actors(ray_cluster, actors)
        answer = httpx.post(
            f"{server.url}/api/v1/projects/default/predict-batch",
            json={
                "input": "patients",
                "output": "api_out",
                "model": "cancer@prod",
                "on": "ray",
            },
            timeout=120,
        )
        assert answer.status_code == 201, answer.text
        by_api = answer.json()
        _more_actors(ray_cluster, actors)

        expected = _rows(client, "local_out")
        from_cli, from_api = _rows(client, "cli_out"), _rows(client, "api_out")

    assert local["rows"] == len(frame)
    for result in (by_cli, by_api):
        assert {k: result[k] for k in ("rows", "model", "version", "classes")} == {
            k: local[k] for k in ("rows", "model", "version", "classes")
        }
    assert len(expected) == len(frame)
    assert {"prediction", "probabilities", "f0"} <= set(expected[0])
    # Every column of every row, the scores included, as the local path wrote it.
    assert from_cli == expected
    assert from_api == expected
