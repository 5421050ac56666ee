"""``loopml transforms`` against a real ``loopml up``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import RunningServer

pytestmark = pytest.mark.e2e


def test_apply_show_lineage_and_delete_with_the_cli(server: RunningServer, tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\nn,1.5\ns,2\nn,3\n")
    assert server.cli("ingest", str(data), "--table", "sales").returncode == 0
    query = tmp_path / "totals.sql"
    query.write_text("SELECT region, sum(amount) AS total\nFROM sales GROUP BY region\n")

    applied = server.cli("transforms", "apply", "totals", "--sql", f"@{query}", "--into", "totals")
    assert applied.returncode == 0, applied.stderr
    assert "sales@0 -> totals@0, 2 rows (revision 1)" in applied.stdout
    chained = server.cli(
        "transforms",
        "apply",
        "top",
        "--sql",
        "SELECT max(total) AS top FROM totals",
        "--into",
        "top",
    )
    assert chained.returncode == 0, chained.stderr
    again = server.cli("transforms", "apply", "totals", "--json")
    assert json.loads(again.stdout)["output_version"] == 1

    listed = json.loads(server.cli("transforms", "list", "--json").stdout)
    assert [(t["name"], t["into_table"], t["revision"]) for t in listed] == [
        ("top", "top", 1),
        ("totals", "totals", 1),
    ]
    shown = server.cli("transforms", "show", "totals")
    assert shown.returncode == 0, shown.stderr
    assert "FROM sales GROUP BY region" in shown.stdout
    assert "totals@1" in shown.stdout
    assert "totals@0" in shown.stdout

    traced = server.cli("transforms", "lineage", "top@0")
    assert traced.returncode == 0, traced.stderr
    assert "top: totals@0 -> top@0" in traced.stdout
    assert "totals: sales@0 -> totals@0" in traced.stdout
    assert "sources (not written by a transform): sales@0" in traced.stdout
    assert "not written by a transform" in server.cli("transforms", "lineage", "sales").stdout

    refused = server.cli(
        "transforms",
        "apply",
        "evil",
        "--sql",
        "SELECT * FROM read_csv('/etc/passwd')",
        "--into",
        "x",
    )
    assert refused.returncode == 1
    assert "error: " in refused.stderr
    assert "read_csv" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad_ref = server.cli("transforms", "lineage", "top@x")
    assert bad_ref.returncode == 1
    assert "sales@3" in bad_ref.stderr

    assert server.cli("transforms", "delete", "top", "--yes").returncode == 0
    gone = server.cli("transforms", "show", "top")
    assert gone.returncode == 1
    assert "not found" in gone.stderr
    tables = server.cli("tables", "list", "--json").stdout
    assert "top" in [t["name"] for t in json.loads(tables)]
