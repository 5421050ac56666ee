"""The CLI's habits against a real ``loopml up``: one server per home (a second ``up`` is
refused), the current project, events newest first and followed, lists as CSV across
projects, and ``loopml down`` stopping the server cleanly."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .conftest import LOOPML, running_server

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(180)
def test_up_status_use_events_and_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_server(home) as server:
        again = server.cli("up", "--port", "1")  # refused before it binds anything
        assert again.returncode == 1
        assert f"loopml is already running with home {server.home}" in again.stderr

        assert server.cli("projects", "create", "churn").returncode == 0
        used = server.cli("use", "churn")
        assert used.stdout.strip() == "current project: churn", used.stdout + used.stderr
        status = server.cli("status")
        assert "project   churn (current, from loopml use" in status.stdout, status.stdout
        assert "deployments (0)" in status.stdout

        follower = subprocess.Popen(
            [*LOOPML, "events", "--follow", "-n", "1"],
            env=server.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(3)
            assert server.cli("projects", "create", "fraud").returncode == 0
            assert follower.stdout is not None
            deadline = time.monotonic() + 20
            lines: list[str] = []
            while time.monotonic() < deadline and not any("fraud" in x for x in lines):
                lines.append(follower.stdout.readline())
            assert any("project.created" in x and "fraud" in x for x in lines), lines
        finally:
            follower.terminate()
            follower.wait(10)
            if follower.stdout is not None:
                follower.stdout.close()

        newest = server.cli("events", "-o", "csv", "-n", "2")
        rows = newest.stdout.splitlines()
        assert rows[0] == "time,type,subject,project,actor,id"
        assert rows[1].split(",")[1:3] == ["project.created", "fraud"]  # newest first
        listed = server.cli("deployments", "list", "--all-projects", "-o", "csv")
        assert listed.stdout.splitlines() == ["name,status,model,project,ready,traffic,message"]

        down = server.cli("down")
        assert down.returncode == 0, down.stderr
        assert f"stopped loopml at {server.url}" in down.stdout
        # A clean stop by SIGTERM exits 0 (uvicorn's own re-raise of the signal is dropped),
        # after the application's own shutdown (replicas, worker) completed.
        assert server.process.wait(timeout=10) == 0
        assert "Application shutdown complete" in (server.home / "server.log").read_text()
        assert not (server.home / "loopml.pid").exists()
        gone = server.cli("down")
        assert gone.returncode == 1
        assert "no loopml up is running with home" in gone.stderr
