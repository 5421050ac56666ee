"""``loopml tables contract`` and ``loopml tables reports`` against a real ``loopml up``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import RunningServer

pytestmark = pytest.mark.e2e


def test_contract_set_show_reports_with_the_cli(server: RunningServer, tmp_path: Path) -> None:
    data = tmp_path / "sales.csv"
    data.write_text("id,amount\n1,2.5\n")
    assert server.cli("ingest", str(data), "--table", "sales").returncode == 0
    canary = tmp_path / "CANARY"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'columns: !!python/object/apply:os.system ["touch {canary}"]\n')
    refused = server.cli("tables", "contract", "set", "sales", str(evil))
    assert refused.returncode != 0
    assert "not valid YAML" in refused.stderr
    assert not canary.exists()
    contract = tmp_path / "contract.yaml"
    contract.write_text("columns:\n  amount: {min: 0}\non_fail: reject\n")
    done = server.cli("tables", "contract", "set", "sales", str(contract))
    assert done.returncode == 0, done.stderr
    assert '"min": 0' in server.cli("tables", "contract", "show", "sales").stdout
    data.write_text("id,amount\n2,-1\n")
    failed = server.cli("ingest", str(data), "--table", "sales")
    assert failed.returncode != 0
    assert "nothing was written" in failed.stderr
    listed = server.cli("tables", "reports", "sales")
    assert "failed (reject)" in listed.stdout
    assert "amount:min" in listed.stdout
