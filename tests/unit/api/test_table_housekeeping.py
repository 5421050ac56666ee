"""Compaction and vacuum through the SDK against the in-process app."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import NotFoundError


def test_compact_then_vacuum(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    for i in range(3):
        path.write_text(f"id,amount\n{i},2.5\n")
        client.tables.ingest_file("default", "sales", path)
    report = client.tables.compact("default", "sales")
    assert (report.files_before, report.files_after, report.version) == (3, 1, 3)
    assert client.tables.get("default", "sales").version == 3
    dry = client.tables.vacuum("default", "sales", retention_hours=0, dry_run=True)
    assert (dry.files_deleted, dry.dry_run) == (3, True)
    kept = client.tables.vacuum("default", "sales")  # the default retention: a week
    assert kept.files_deleted == 0
    assert kept.retention_hours == 168
    done = client.tables.vacuum("default", "sales", retention_hours=0)
    assert done.files_deleted == 3
    assert done.bytes_freed > 0
    assert len(client.tables.head("default", "sales")) == 3


def test_housekeeping_of_unknown_table_and_bad_retention(client: Client, http: TestClient) -> None:
    with pytest.raises(NotFoundError):
        client.tables.compact("default", "nothing")
    url = "/api/v1/projects/default/tables/nothing/vacuum"
    assert http.post(url, params={"retention_hours": -1}).status_code == 422
