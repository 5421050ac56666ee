"""An AutoML search's trials stay under their parent run: ``loopml runs list`` and the API
list top-level runs with how many children each has; ``--parent`` and ``--all`` show them."""

from __future__ import annotations

import json

import pytest

from loopml.client import Client
from loopml.core.run_search import RunSearch

from .conftest import Platform

PROJECT = "folding"


@pytest.fixture(scope="module")
def search(platform: Platform) -> dict[str, str]:
    """A parent run ``automl`` with 12 trials, and one run of its own, ``solo``."""
    with platform.client() as client:
        client.projects.create(PROJECT)
        parent = client.runs.create("churn", project=PROJECT, name="automl")
        for i in range(12):
            client.runs.create("churn", project=PROJECT, name=f"trial-{i}", parent_run_id=parent.id)
        solo = client.runs.create("churn", project=PROJECT, name="solo")
    return {"parent": parent.id, "solo": solo.id}


def test_the_api_folds_child_runs_under_their_parent(
    platform: Platform, search: dict[str, str]
) -> None:
    with Client(platform.url) as client:
        folded = client.runs.search(project=PROJECT).items
        flat = client.runs.search(RunSearch(children="flat"), project=PROJECT).items
        trials = client.runs.search(RunSearch(parent_run_id=search["parent"]), project=PROJECT)

    assert [(r.name, r.children) for r in folded] == [("solo", 0), ("automl", 12)]
    assert len(flat) == 14
    assert sorted(r.name for r in trials.items) == sorted(f"trial-{i}" for i in range(12))


def test_runs_list_shows_the_parent_with_its_count(
    platform: Platform, search: dict[str, str]
) -> None:
    result = platform.cli("runs", "list", "-p", PROJECT)

    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "automl" in line or "trial" in line]
    assert len(lines) == 1
    assert "│ 12 " in lines[0]
    assert "solo" in result.stdout
    assert "12 child run(s) folded under their parents; list them with --parent RUN_ID, or " in (
        " ".join(result.stderr.split())
    )


def test_runs_list_parent_and_all(platform: Platform, search: dict[str, str]) -> None:
    trials = platform.cli("runs", "list", "-p", PROJECT, "--parent", search["parent"], "--json")
    every = platform.cli("runs", "list", "-p", PROJECT, "--all", "-o", "csv")

    assert trials.exit_code == 0, trials.output
    assert len(json.loads(trials.stdout)) == 12
    assert every.exit_code == 0, every.output
    rows = every.stdout.splitlines()
    assert rows[0].startswith("id,name,status,parent,")
    assert len(rows) == 1 + 14
    assert sum(search["parent"] in row for row in rows) == 13  # itself, and 12 trials
