"""`loopml models` against a running `loopml up`, like a user would drive it."""

from __future__ import annotations

import json

import pytest

from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore
from tests.tracking_rows import log_model, make_run

from .conftest import RunningServer

pytestmark = pytest.mark.e2e


def test_cli_registers_aliases_shows_lineage_and_collects_garbage(server: RunningServer) -> None:
    # The run and its logged model are written the way tracking writes them, into the
    # server's own database and artifact folder.
    store = MetadataStore(f"sqlite:///{server.home / 'loopml.db'}")
    try:
        run = make_run(store, inputs=(("dataset", "snap-e2e"),))
        log_model(store, LocalArtifactStore(server.home / "artifacts"), run)
    finally:
        store.dispose()

    registered = server.cli("models", "register", "e2e-churn", "--run", run.id)
    assert registered.returncode == 0, registered.stderr
    assert "e2e-churn/1" in registered.stdout
    aliased = server.cli("models", "alias", "set", "e2e-churn", "prod", "1")
    assert aliased.returncode == 0, aliased.stderr
    shown = server.cli("models", "show", "e2e-churn", "--json")
    assert json.loads(shown.stdout)["aliases"] == {"prod": 1}
    listed = server.cli("models", "versions", "e2e-churn", "--json")
    assert [v["status"] for v in json.loads(listed.stdout)] == ["READY"]
    lineage = server.cli("models", "lineage", "e2e-churn@prod", "--json")
    assert lineage.returncode == 0, lineage.stderr
    assert json.loads(lineage.stdout)["inputs"][0]["ref"] == "snap-e2e"
    assert "e2e-churn" in server.cli("models", "list").stdout

    bad = server.cli("models", "lineage", "e2e-churn@@x")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: invalid model reference")
    assert "Traceback" not in bad.stderr
    busy = server.cli("models", "alias", "rm", "e2e-churn", "nope")
    assert busy.returncode == 1
    assert "no alias 'nope'" in busy.stderr
    assert server.cli("models", "alias", "rm", "e2e-churn", "prod").returncode == 0

    gc = server.cli("gc", "--dry-run", "--json")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["dry_run"] is True
