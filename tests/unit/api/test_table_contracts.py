"""Validation contracts and reports through the SDK against the in-process app."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import NotFoundError, ValidationError

CONTRACT = """
columns:
  id: {type: int64, not_null: true, unique: true}
  amount: {min: 0}
on_fail: reject
"""


def test_contract_reject_and_quarantine_through_the_sdk(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "sales.csv"
    path.write_text("id,amount\n1,2.5\n")
    client.tables.ingest_file("default", "sales", path)
    with pytest.raises(NotFoundError):
        client.tables.get_contract("default", "sales")
    contract_file = tmp_path / "contract.yaml"
    contract_file.write_text(CONTRACT)
    client.tables.set_contract("default", "sales", contract_file)
    assert client.tables.get_contract("default", "sales").columns["id"].unique
    path.write_text("id,amount\n2,1\n1,-3\n")
    with pytest.raises(ValidationError) as caught:
        client.tables.ingest_file("default", "sales", path)
    assert caught.value.details["report"]["rows_failed"] == 1
    assert client.tables.get("default", "sales").version == 0
    client.tables.set_contract("default", "sales", CONTRACT.replace("reject", "quarantine"))
    commit = client.tables.ingest_file("default", "sales", path)
    assert (commit.version, commit.rows_added) == (1, 1)
    assert client.tables.head("default", "sales__rejected") == [
        {"id": 1, "amount": -3.0, "_loopml_reason": "id:unique; amount:min"}
    ]
    first = client.tables.reports("default", "sales", limit=1)
    assert (first.items[0].passed, first.items[0].rejected_version) == (False, 0)
    rest = client.tables.reports("default", "sales", cursor=first.next_cursor)
    assert [r.passed for r in rest.items] == [False]
    client.tables.delete_contract("default", "sales")
    assert client.tables.ingest_file("default", "sales", path).version == 2


def test_contract_requests_are_validated(client: Client, http: TestClient) -> None:
    url = "/api/v1/projects/default/tables/sales/contract"
    assert http.put(url, json={"columns": {}}).status_code == 404
    client.tables.create("default", "sales", columns=[{"name": "a", "type": "int64"}])
    answer = http.put(url, json={"columns": {"a": {"bogus": 1}}})
    assert answer.status_code == 422
    assert http.put(url, json={"columns": {"a": {"regex": "(?<=a)"}}}).status_code == 422
    assert http.get(url.replace("contract", "reports?cursor=zz")).status_code == 422
    with pytest.raises(ValidationError, match="not valid YAML"):
        client.tables.set_contract("default", "sales", "a: !!python/object/apply:os.system [x]")
