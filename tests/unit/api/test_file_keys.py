"""File ingest with an Idempotency-Key (issue 51, item 4): a retried upload lands once,
also when the server died between its commit and recording it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.client.tables import file_idempotency_key
from loopml.core import layout
from loopml.core.errors import ValidationError
from loopml.core.ingest import IngestKey
from loopml.data import _delta, files, keyed_files, lake
from loopml.store import projects

FILES = "/api/v1/projects/default/tables/sales/files"


def _sales(tmp_path: Path) -> Path:
    path = tmp_path / "sales.csv"
    path.write_text("id,amount\n1,2.5\n2,3.5\n")
    return path


def test_a_file_sent_again_under_its_key_lands_once(client: Client, tmp_path: Path) -> None:
    path = _sales(tmp_path)
    key = file_idempotency_key(path, "default", "sales", "append")
    first = client.tables.ingest_file("default", "sales", path, idempotency_key=key)
    again = client.tables.ingest_file("default", "sales", path, idempotency_key=key)
    assert (first.version, first.rows_added, first.replayed) == (0, 2, False)
    assert (again.version, again.rows_added, again.replayed) == (0, 2, True)
    assert client.tables.get("default", "sales").row_count == 2
    assert [c.version for c in client.tables.history("default", "sales")] == [0]
    with pytest.raises(ValidationError, match="already used for another upload"):
        client.tables.ingest_file("default", "sales", path, mode="overwrite", idempotency_key=key)
    other = file_idempotency_key(path, "default", "sales", "overwrite")
    assert other != key
    assert client.tables.ingest_file("default", "sales", path).version == 1  # no key: appends


def test_a_replay_is_a_200_saying_so(http: TestClient) -> None:
    body, headers = b"id\n1\n", {"Idempotency-Key": "upload-1"}
    first = http.post(FILES, params={"format": "csv"}, content=body, headers=headers)
    again = http.post(FILES, params={"format": "csv"}, content=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["replayed"] is True
    assert again.json()["version"] == first.json()["version"] == 0
    bad = http.post(FILES, content=body, headers={"Idempotency-Key": "has space"})
    assert bad.status_code == 422


def test_an_upload_whose_commit_was_never_recorded_is_answered_by_it(
    http: TestClient, client: Client, tmp_path: Path
) -> None:
    """The server died after the Delta commit, before recording it: the retry must find it."""
    context = http.app.state.running.context  # type: ignore[attr-defined]
    store, artifacts = context.store, context.artifacts
    path = _sales(tmp_path)
    client.tables.ingest_file("default", "sales", path)  # version 0
    key = file_idempotency_key(path, "default", "sales", "append")
    options = keyed_files.upload_options("csv", "append", False, [])
    landed = IngestKey(key=key, body_sha256=keyed_files.fingerprint(options), rows=0)
    with store.session() as session:
        project_id = projects.get(session, "default").id
    table = lake.get_table(store, artifacts, "default", "sales")
    loc = artifacts.native_location(layout.lake_table_prefix(project_id, table.id))
    reader = files.read_upload(path, "csv")
    _delta.write(loc, reader, "append", metadata=_delta.keys_metadata([landed]))
    retry = client.tables.ingest_file("default", "sales", path, idempotency_key=key)
    assert (retry.version, retry.rows_added, retry.replayed) == (1, 2, True)
    assert client.tables.get("default", "sales").row_count == 4
