"""Serving with features, end to end: a deployment that declares a feature view is called
with entity keys only, the gateway completes each instance from the online store (SQLite),
a missing or expired entity is a 422 that names it (or gets the declared defaults), the
prediction log records the values the model saw, and the skew check finds the rows whose
served values the lake no longer agrees with. Real app, real replica, real SDK."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.deployments import DeploymentStatus
from loopml.core.errors import NotFoundError, ValidationError
from loopml.faces.context import AppContext
from loopml.settings import Settings
from tests.conftest import free_port
from tests.unit.deploy.deploy_support import (
    PackageFiles,
    instances,
    package_files,
    register_files,
)
from tests.waiting import eventually

P = "default"
FEATURES = [f"f{i}" for i in range(8)]
VIEW = f"""\
name: patient_stats
entities: [patient_id]
event_time: ts
ttl: 1d
source: patients
features: [{", ".join(FEATURES)}]
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    server = settings.server.model_copy(update={"port": free_port()})
    return settings.model_copy(update={"server": server})


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> PackageFiles:
    return package_files(tmp_path_factory.mktemp("package") / "pkg")


def _ingest(
    client: Client, tmp_path: Path, rows: list[tuple[int, datetime, dict[str, float]]]
) -> None:
    columns: dict[str, Any] = {
        "patient_id": pa.array([r[0] for r in rows], pa.int64()),
        "ts": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
    }
    for name in FEATURES:
        columns[name] = pa.array([r[2][name] for r in rows], pa.float64())
    path = tmp_path / f"patients-{time.monotonic_ns()}.parquet"
    pq.write_table(pa.table(columns), path)
    client.tables.ingest_file(P, "patients", path)


def _predict(http: TestClient, rows: list[dict[str, Any]], path: str = "predict") -> Any:
    return http.post(f"/deployments/churn/{path}", json={"instances": rows})


def _logged(client: Client, count: int) -> list[dict[str, Any]]:
    table = "churn__predictions"

    def rows() -> int:
        try:
            return client.tables.get(P, table).row_count
        except NotFoundError:
            return 0

    eventually(lambda: rows() >= count, 30, f"{count} rows in {table}", describe=rows)
    return client.sql(P, f"SELECT inputs FROM {table}").records()


def test_a_deployment_serves_from_entity_keys(
    client: Client, http: TestClient, package: PackageFiles, tmp_path: Path
) -> None:
    ctx: AppContext = http.app.state.running.context  # type: ignore[attr-defined]
    register_files(ctx.store, ctx.artifacts, package)
    now = datetime.now(UTC)
    rows = instances(3)
    _ingest(
        client,
        tmp_path,
        [
            (1, now - timedelta(hours=1), rows[0]),
            (2, now - timedelta(hours=2), rows[1]),
            (3, now - timedelta(days=3), rows[2]),  # past the 1-day TTL
        ],
    )
    client.features.apply(VIEW)
    client.features.materialize("patient_stats")

    with pytest.raises(NotFoundError, match="ghost"):
        client.deployments.create("churn", "cancer/1", features={"views": ["ghost"]})
    with pytest.raises(ValidationError, match="local"):
        client.deployments.create(
            "churn", "cancer/1", target="kubernetes", features={"views": ["patient_stats"]}
        )
    with pytest.raises(ValidationError, match="no view"):
        client.deployments.create(
            "churn",
            "cancer/1",
            features={"views": ["patient_stats"], "missing": "default", "defaults": {"x": 1}},
        )

    created = client.deployments.create("churn", "cancer/1", features={"views": ["patient_stats"]})
    assert created.spec.features is not None
    assert client.deployments.wait("churn", timeout_s=60).status == DeploymentStatus.READY

    # Entity keys only, and the full rows the client could have sent: the same predictions.
    by_key = _predict(http, [{"patient_id": 1}, {"patient_id": "2"}])
    assert by_key.status_code == 200, by_key.text
    whole = _predict(http, [{"patient_id": 1, **rows[0]}, {"patient_id": 2, **rows[1]}])
    assert by_key.json()["predictions"] == whole.json()["predictions"]
    # A request-time value wins over the stored one.
    changed = _predict(http, [{"patient_id": 1, "f0": rows[0]["f0"] * 100}])
    assert changed.status_code == 200

    missing = _predict(http, [{"patient_id": 1}, {"patient_id": 9}])
    assert missing.status_code == 422
    assert missing.json()["error"]["details"]["reason"] == "missing"
    assert "instance 1" in missing.json()["error"]["message"]
    expired = _predict(http, [{"patient_id": 3}])
    assert expired.status_code == 422
    assert expired.json()["error"]["details"]["reason"] == "expired"
    assert "TTL" in expired.json()["error"]["message"]
    no_key = _predict(http, [{"f0": 1.0}])
    assert (no_key.status_code, no_key.json()["error"]["details"]["missing"]) == (
        422,
        ["patient_id"],
    )
    v2 = http.post("/deployments/churn/v2/models/cancer/infer", json={"inputs": []})
    assert v2.status_code == 422
    assert "predict" in v2.json()["error"]  # the V2 error body: {"error": "..."}

    # Under ``missing: default`` an unknown entity gets the defaults.
    defaults = dict.fromkeys(FEATURES, 0.0)
    updated = client.deployments.update(
        "churn",
        features={"views": ["patient_stats"], "missing": "default", "defaults": defaults},
    )
    assert updated.spec.features is not None
    assert updated.spec.features.missing == "default"
    # The gateway sees the new spec once the target publishes it.
    eventually(
        lambda: _predict(http, [{"patient_id": 9}]).status_code == 200,
        30,
        "an unknown entity to be served its defaults",
        describe=lambda: _predict(http, [{"patient_id": 9}]).text,
    )

    # The log holds what the model saw: the key and every feature value.
    logged = _logged(client, 6)
    inputs = [json.loads(r["inputs"]) for r in logged]
    keyed = [i for i in inputs if i.get("patient_id") in (1, "2")]
    assert keyed
    assert all(set(FEATURES) <= set(i) for i in keyed)

    # Skew: so far only the request-time f0 and the default-filled patient 9 disagree.
    report = client.features.skew("patient_stats", deployment="churn")
    by_feature = {f.feature: f for f in report.features}
    assert report.rows_compared == report.rows_logged == len(logged)
    assert by_feature["f0"].differ == 2
    assert by_feature["f1"].differ == 1
    assert by_feature["f1"].examples[0].entity == {"patient_id": 9}
    assert by_feature["f1"].examples[0].offline is None

    # The lake moves on without a materialize: what patient 1 is served is now stale.
    newer = {**rows[0], "f1": rows[0]["f1"] + 1.0}
    _ingest(client, tmp_path, [(1, datetime.now(UTC) - timedelta(seconds=1), newer)])
    assert _predict(http, [{"patient_id": 1}]).status_code == 200
    _logged(client, len(logged) + 1)
    after = client.features.skew("patient_stats", deployment="churn")
    f1 = next(f for f in after.features if f.feature == "f1")
    assert f1.differ == 2
    assert {e.served for e in f1.examples} >= {rows[0]["f1"]}
    client.deployments.delete("churn")
