"""A model or table not found names the close names in the project and the other
projects that hold that very name, as the CLI prints it (one line on stderr)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import Platform

LOOPML = [sys.executable, "-c", "from loopml.cli.main import main; main()"]


@pytest.fixture(scope="module")
def named(platform: Platform) -> Platform:
    with platform.client() as client:
        for project in ("nm-demo", "nm-shop", "nm-empty"):
            client.projects.create(project)
        for project in ("nm-demo", "nm-shop"):
            client.models.create("churn", project=project)
            client.tables.create(project, "customers", columns=[{"name": "id", "type": "int64"}])
    return platform


def _loopml(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOOPML_CLIENT_URL": platform.url, "COLUMNS": "80"}
    return subprocess.run([*LOOPML, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_model_in_another_project_is_named(named: Platform) -> None:
    result = _loopml(named, "models", "show", "churn", "-p", "nm-empty")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: model 'churn' not found in project 'nm-empty'; model 'churn' exists in "
        "projects 'nm-demo', 'nm-shop' (-p nm-demo)"
    )


def test_a_near_miss_model_name_gets_a_did_you_mean(named: Platform) -> None:
    result = _loopml(named, "models", "show", "chrun", "-p", "nm-shop")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: model 'chrun' not found in project 'nm-shop'; did you mean 'churn'?"
    )


def test_a_missing_version_is_not_a_missing_model(named: Platform) -> None:
    result = _loopml(named, "models", "lineage", "churn/7", "-p", "nm-shop")

    assert result.returncode == 1
    assert "not found" in result.stderr or "no version" in result.stderr, result.stderr
    assert "exists in" not in result.stderr
    assert "did you mean" not in result.stderr


def test_a_near_miss_table_name_gets_a_did_you_mean(named: Platform) -> None:
    result = _loopml(named, "tables", "show", "customer", "-p", "nm-shop")

    assert result.returncode == 1
    assert "did you mean 'customers'?" in result.stderr
    assert result.stderr.startswith("error: table 'customer' not found in project 'nm-shop'")
