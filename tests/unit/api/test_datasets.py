"""Dataset snapshots through the SDK and raw HTTP against the in-process app."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import (
    ArtifactIntegrityError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from loopml.settings import Settings

P = "default"
URL = "/api/v1/projects/default/datasets"


@pytest.fixture
def churn(client: Client, tmp_path: Path) -> Path:
    """A 60-row table ``churn``: a third of its rows have label 1."""
    path = tmp_path / "churn.csv"
    rows = "".join(f"{i},{i % 3 == 0:d},{i * 1.5},{'nsew'[i % 4]}\n" for i in range(60))
    path.write_text("id,label,spend,region\n" + rows)
    client.tables.ingest_file(P, "churn", path)
    return path


def test_create_show_read_and_delete(client: Client, churn: Path, tmp_path: Path) -> None:
    made = client.datasets.create(
        P, "train_set", "churn", description="churn, all rows", split={"stratify": "label"}
    )
    assert (made.created, made.version, made.row_count) == (True, 1, 60)
    assert made.split is not None
    assert (made.split.train_rows, made.split.eval_rows) == (48, 12)
    again = client.datasets.create(P, "train_set", "churn@0")
    assert (again.created, again.version, again.id) == (False, 1, made.id)
    detail = client.datasets.get(P, "train_set")
    assert (detail.description, detail.latest_version) == ("churn, all rows", 1)
    assert [v.eval_hash for v in detail.versions] == [made.split.eval_hash]
    version = client.datasets.version(P, "train_set", 1)
    assert version.profile.column("spend").max == 88.5
    assert version.profile.column("region").distinct == 4
    assert version == client.datasets.version(P, "train_set")  # the latest
    rows = client.datasets.read(P, "train_set")
    assert sorted(rows.column("id").to_pylist()) == list(range(60))
    held = client.datasets.read(P, "train_set", 1, part="eval")
    assert held.column("label").to_pylist().count(1) == 4  # a third of 12
    saved = client.datasets.download(P, "train_set", tmp_path / "out" / "eval.parquet", part="eval")
    assert pq.read_table(saved).equals(held)
    page = client.datasets.list(P)
    assert [d.name for d in page.items] == ["train_set"]
    assert page.items[0].latest is not None
    assert page.items[0].latest.content_hash == made.content_hash
    client.datasets.delete(P, "train_set")
    with pytest.raises(NotFoundError):
        client.datasets.get(P, "train_set")
    assert client.datasets.list(P).items == []


def test_status_codes_and_headers(http: TestClient, churn: Path) -> None:
    body = {"name": "snap", "from": "SELECT id, label FROM churn WHERE id < 10"}
    first = http.post(URL, json=body)
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["sources"] == [{"table": "churn", "version": 0}]
    assert first.json()["query"] == body["from"]
    second = http.post(URL, json=body)
    assert (second.status_code, second.json()["created"]) == (200, False)
    split = http.post(f"{URL}/snap/versions/1/split", json={"eval_fraction": 0.3, "seed": 2})
    assert (split.status_code, split.json()["split"]["eval_rows"]) == (201, 3)
    same = http.post(f"{URL}/snap/versions/latest/split", json={"eval_fraction": 0.3, "seed": 2})
    assert (same.status_code, same.json()["created"]) == (200, False)
    data = http.get(f"{URL}/snap/versions/1/data", params={"part": "eval"})
    assert data.status_code == 200
    assert data.headers["content-type"] == "application/vnd.apache.parquet"
    assert data.headers["content-disposition"] == 'attachment; filename="snap-v1-eval.parquet"'
    assert data.headers["x-content-type-options"] == "nosniff"
    assert data.headers["x-loopml-content-hash"] == split.json()["split"]["eval_hash"]
    assert pq.read_table(io.BytesIO(data.content)).num_rows == 3
    listed = http.get(f"{URL}/snap/versions", params={"limit": 1})
    assert listed.json()["items"][0]["version"] == 1
    assert listed.json()["next_cursor"] is None
    assert http.delete(f"{URL}/snap").status_code == 204
    assert http.delete(f"{URL}/snap").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "s", "from": "nope"}, 404, "table 'nope' not found"),
        ({"name": "s", "from": "churn@9"}, 404, "has no version 9"),
        ({"name": "s", "from": "SELECT nope FROM churn"}, 422, "query failed"),
        ({"name": "s", "from": "DROP TABLE churn"}, 422, ""),
        ({"name": "s", "from": "SELECT * FROM read_csv('/etc/passwd')"}, 422, ""),
        ({"name": "Bad", "from": "churn"}, 422, "name"),
        ({"name": "s", "from": ""}, 422, "from"),
        ({"name": "s", "from": "churn", "split": {"eval_fraction": 1}}, 422, "eval_fraction"),
        ({"name": "s", "from": "churn", "split": {"seed": "1"}}, 422, "seed"),
        ({"name": "s", "from": "churn", "split": {"stratify": "nope"}}, 422, "no such column"),
        ({"name": "s", "from": "churn", "split": {"stratify": "id"}}, 422, "has 1 row"),
        ({"name": "s", "from": "churn", "extra": 1}, 422, "extra"),
        ({"name": "s", "from": "churn", "timeout_s": 0}, 422, "timeout_s"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(
    http: TestClient, churn: Path, body: dict[str, object], status: int, message: str
) -> None:
    response = http.post(URL, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert http.get(URL).json()["items"] == []


def test_missing_things_are_404(http: TestClient, client: Client, churn: Path) -> None:
    client.datasets.create(P, "snap", "churn")
    assert http.get(f"{URL}/nope").status_code == 404
    assert http.get(f"{URL}/snap/versions/2").status_code == 404
    assert http.get("/api/v1/projects/nope/datasets").status_code == 404
    assert http.get(f"{URL}/snap/versions/0").status_code == 422
    assert http.get(f"{URL}/Snap").status_code == 422
    no_split = http.get(f"{URL}/snap/versions/1/data", params={"part": "train"})
    assert no_split.status_code == 404
    assert "no train/eval split" in no_split.json()["error"]["message"]
    assert http.get(f"{URL}/snap/versions/1/data", params={"part": "x"}).status_code == 422
    with pytest.raises(NotFoundError):
        client.datasets.split(P, "nope", eval_fraction=0.5)


def test_another_split_is_refused_with_409(client: Client, churn: Path) -> None:
    client.datasets.create(P, "snap", "churn", split=0.25)
    with pytest.raises(ConflictError, match="already has a frozen split") as caught:
        client.datasets.split(P, "snap", 1, eval_fraction=0.5)
    assert caught.value.details["split"]["eval_fraction"] == 0.25
    with pytest.raises(ValidationError):
        client.datasets.split(P, "snap", 1, eval_fraction=1.5)


def test_a_tampered_file_is_refused_over_http(
    client: Client, settings: Settings, churn: Path, http: TestClient
) -> None:
    made = client.datasets.create(P, "snap", "churn")
    stored = Path(settings.artifacts.root) / made.data_key
    table = pq.read_table(stored)
    spend = table.column("spend").to_pylist()
    spend[5] = -1.0
    pq.write_table(table.set_column(2, "spend", pa.array(spend)), stored)
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        client.datasets.read(P, "snap")
    response = http.get(f"{URL}/snap/versions/1/data")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "integrity_error")
