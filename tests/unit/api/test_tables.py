"""Lake tables through the SDK against the in-process app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import NotFoundError, PayloadTooLargeError, ValidationError
from tests.unit.api.conftest import MAX_UPLOAD


def test_ingest_show_head_history_delete(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("id,amount\n1,2.5\n2,3.5\n")
    sent: list[int] = []
    commit = client.tables.ingest_file("default", "sales", path, progress=sent.append)
    assert (commit.version, commit.rows_added, sum(sent)) == (0, 2, path.stat().st_size)
    path.write_text("id,amount\n3,4\n")  # an integer into the float column: a safe cast
    assert client.tables.ingest_file("default", "sales", path).version == 1
    table = client.tables.get("default", "sales")
    assert (table.version, table.row_count) == (1, 3)
    assert [t.name for t in client.tables.list("default")] == ["sales"]
    assert len(client.tables.head("default", "sales", 2)) == 2
    assert [c.version for c in client.tables.history("default", "sales")] == [1, 0]
    client.tables.delete("default", "sales")
    with pytest.raises(NotFoundError):
        client.tables.get("default", "sales")


def test_schema_mismatch_is_a_422_naming_the_column(client: Client, tmp_path: Path) -> None:
    good, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    good.write_text('{"id": 1}\n')
    bad.write_text('{"id": "one"}\n')
    client.tables.ingest_file("default", "events", good)
    with pytest.raises(ValidationError) as caught:
        client.tables.ingest_file("default", "events", bad)
    assert caught.value.details["columns"][0]["column"] == "id"
    assert caught.value.details["columns"][0]["rows"] == [{"row": 0, "value": "one"}]


@pytest.mark.parametrize("name", ["Sales", "1abc", "a-b", "x" * 64])
def test_bad_table_names_are_refused_with_the_rule(http: TestClient, name: str) -> None:
    response = http.post(
        f"/api/v1/projects/default/tables/{name}/files", content=b"a\n1\n", params={"format": "csv"}
    )
    assert response.status_code == 422
    created = http.post("/api/v1/projects/default/tables", json={"name": name})
    assert created.status_code == 422


def test_hostile_filename_header_is_never_a_path(
    http: TestClient, client: Client, settings: object, tmp_path: Path
) -> None:
    target = tmp_path / "home" / "evil.csv"
    response = http.post(
        "/api/v1/projects/default/tables/t1/files",
        content=b"a\n1\n",
        headers={"Content-Disposition": 'attachment; filename="../../evil.csv"'},
    )
    assert response.status_code == 201, response.text
    assert not target.exists()
    assert not (tmp_path / "evil.csv").exists()
    spool = tmp_path / "home" / "tmp" / "ingest"
    # CSV is read as it arrives: nothing is spooled, or what was is gone
    assert not spool.exists() or list(spool.iterdir()) == []
    assert client.tables.get("default", "t1").row_count == 1


def test_an_oversize_upload_is_413(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"1\n" * (MAX_UPLOAD // 2 + 10))
    with pytest.raises(PayloadTooLargeError):
        client.tables.ingest_file("default", "big", path)


def test_create_empty_table_with_columns(client: Client) -> None:
    table = client.tables.create(
        "default",
        "empty",
        columns=[{"name": "id", "type": "int64"}, {"name": "s", "type": "string"}],
    )
    assert table.version == 0
    assert [c.type for c in table.columns] == ["int64", "string"]
    assert client.tables.head("default", "empty") == []
    with pytest.raises(ValidationError, match="unknown column type"):
        client.tables.create("default", "bad", columns=[{"name": "x", "type": "nope"}])


def test_a_binary_body_is_a_422_not_a_crash(http: TestClient) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x08\x00:~\xc2U\x00IEND\xaeB`\x82"
    response = http.post("/api/v1/projects/default/tables/t/files", content=png)
    assert response.status_code == 422, response.text


def test_a_jsonl_field_always_empty_is_a_422_naming_it(http: TestClient) -> None:
    body = b'{"id": 1, "meta": {}}\n{"id": 2, "meta": {}}\n'
    response = http.post(
        "/api/v1/projects/default/tables/t/files", params={"format": "jsonl"}, content=body
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "'meta' holds an empty object" in error["message"]
    assert error["details"]["column"] == "meta"
    assert http.get("/api/v1/projects/default/tables/t").status_code == 404  # nothing made


def test_a_streamed_upload_over_the_limit_is_413_and_lands_nothing(
    http: TestClient, client: Client, tmp_path: Path
) -> None:
    client.tables.create("default", "big", columns=[{"name": "a", "type": "int64"}])

    def body() -> Iterator[bytes]:  # streamed: the limit is found while Arrow reads
        yield b"a\n"
        for _ in range(MAX_UPLOAD // 60_000 + 2):
            yield b"1\n" * 30_000

    response = http.post("/api/v1/projects/default/tables/big/files?format=csv", content=body())
    assert response.status_code == 413, response.text
    table = client.tables.get("default", "big")
    assert (table.version, table.row_count) == (0, 0)


def test_declared_columns_are_read_as_declared_and_checked_by_the_server(
    http: TestClient, client: Client, tmp_path: Path
) -> None:
    files = "/api/v1/projects/default/tables/codes/files"
    body = b"zip,n\n02134,1\n00501,x\n"
    refused = http.post(files, content=body, params=[("format", "csv"), ("column", "n:int64")])
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"]["columns"][0]["rows"] == [{"row": 1, "value": "x"}]
    for bad, message in [("n", "expected NAME:TYPE"), ("n:int", "unknown column type 'int'")]:
        answer = http.post(files, content=body, params={"format": "csv", "column": bad})
        assert answer.status_code == 422, answer.text
        assert message in answer.json()["error"]["message"]
    with pytest.raises(NotFoundError):  # no refusal left a table behind
        client.tables.get("default", "codes")

    path = tmp_path / "codes.csv"
    path.write_bytes(body)
    commit = client.tables.ingest_file("default", "codes", path, schema={"zip": "string"})
    assert commit.rows_added == 2
    assert client.tables.head("default", "codes", 1) == [{"zip": "02134", "n": "1"}]
