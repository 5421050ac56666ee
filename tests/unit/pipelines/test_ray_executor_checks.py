"""The Ray executor's checks that need no cluster: the node's loopml version, a cluster on
other machines with storage local to this one, Ray not installed, and its settings."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from loopml._version import __version__
from loopml.cli import main
from loopml.cluster.ray import is_local_address, refuse_local_storage
from loopml.core.errors import ConfigurationError
from loopml.core.executors import RayExecutorConfig
from loopml.pipelines.backends import open_executor
from loopml.pipelines.backends.ray import run_attempt
from loopml.pipelines.base import StepOutcome, StepTask
from loopml.settings import Settings

REMOTE = "203.0.113.7:6379"  # TEST-NET-3: never this machine


def test_a_node_with_another_loopml_fails_the_attempt_naming_both_versions(
    tmp_path: Path,
) -> None:
    task = StepTask(
        project="default",
        project_id="p" * 32,
        pipeline="p",
        run_id="r" * 32,
        step="s",
        step_run_id="s" * 32,
        attempt=1,
        uses="python",
        python="nowhere:nothing",
        params={},
        outputs={},
        settings=Settings(home=tmp_path).model_dump(mode="json"),
    )
    items = list(run_attempt(task.to_json(), "0.0.1", None, 1.0))
    assert [kind for kind, _ in items] == ["node", "outcome"]  # no step process was started
    outcome = StepOutcome.from_json(items[1][1])
    assert not outcome.ok
    assert outcome.error is not None
    assert outcome.error.type == "StepEnvironmentMismatch"
    assert not outcome.error.retryable
    assert f"runs loopml {__version__}" in outcome.error.message
    assert "runs loopml 0.0.1" in outcome.error.message
    assert f"host {socket.gethostname()}" in outcome.error.message


def test_a_remote_cluster_with_local_storage_is_refused_at_start(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ConfigurationError) as refused:
        open_executor(RayExecutorConfig(type="ray", address=REMOTE), settings)
    message = refused.value.message
    assert REMOTE in message
    assert "is not on this machine" in message
    assert f"local folder {str(tmp_path / 'artifacts')!r} (artifacts.root)" in message
    assert "SQLite file on this machine (database.url)" in message


def test_shared_storage_or_a_local_cluster_is_accepted(tmp_path: Path) -> None:
    shared = Settings(
        home=tmp_path,
        artifacts={"root": "s3://bucket/loopml"},
        database={"url": "postgresql://loopml@db:5432/loopml"},
    )
    refuse_local_storage(REMOTE, shared)
    local = Settings(home=tmp_path)
    for address in (None, "auto", "127.0.0.1:6379", "[::1]:6379", f"{socket.gethostname()}:6379"):
        assert is_local_address(address), address
        refuse_local_storage(address, local)
    assert not is_local_address(REMOTE)


def test_without_ray_installed_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'loopml\[ray\]'"):
        open_executor(RayExecutorConfig(type="ray"), Settings(home=tmp_path))


def test_the_executor_section_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_WORKER_EXECUTOR", json.dumps({"type": "ray", "address": REMOTE}))
    executor = Settings().worker.executor
    assert isinstance(executor, RayExecutorConfig)
    assert executor.address == REMOTE
    with pytest.raises(ValidationError, match="'local', 'ray'"):
        Settings(worker={"executor": {"type": "spark"}})
    with pytest.raises(ValidationError, match="Ray Client address"):
        RayExecutorConfig(type="ray", address="ray://head:10001")


def test_loopml_worker_refuses_a_remote_cluster_with_the_reason() -> None:
    # A known error: the entry point (cli.main.main) prints its message as one line.
    result = CliRunner().invoke(main.app, ["worker", "--ray-address", REMOTE])
    assert isinstance(result.exception, ConfigurationError)
    assert "is not on this machine" in result.exception.message
    assert "artifacts.root" in result.exception.message
    wrong = CliRunner().invoke(main.app, ["worker", "--executor", "local", "--ray-address", REMOTE])
    assert wrong.exit_code == 2
    assert "--ray-address needs --executor ray" in wrong.output
    cpus = CliRunner().invoke(main.app, ["worker", "--ray-address", REMOTE, "--cpus", "2"])
    assert cpus.exit_code == 2
    assert "--cpus is for the local executor" in cpus.output
