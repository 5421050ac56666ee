"""Tracking like a user: a training script logs to a real ``loopml up``; the CLI reads it
back; a script killed with SIGKILL leaves a run that becomes LOST (RELIABILITY 18)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from loopml.client import Client
from loopml.core.runs import Run
from tests.waiting import eventually

from .conftest import running_server

pytestmark = pytest.mark.e2e

# The script beats every 0.5 s: a timeout 20x that keeps a live run RUNNING on a loaded
# machine that delays a few beats (at 2 s, a 2 s stall of the script could lose it).
HEARTBEAT_TIMEOUT_S = 10

TRAIN = textwrap.dedent(
    """
    import sys, time
    import loopml

    with loopml.start_run("churn", params={"lr": sys.argv[1]}, heartbeat_interval_s=0.5) as run:
        print(run.id, flush=True)
        for step in range(50):
            run.log_metrics({"loss": float(sys.argv[1]) / (step + 1)}, step=step)
        if sys.argv[2] == "hang":
            run.flush()
            time.sleep(3600)
    """
)


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


def test_a_script_logs_runs_and_the_cli_lists_shows_and_compares(tmp_path: Path) -> None:
    script = _script(tmp_path)
    with running_server(tmp_path) as server:
        ids = []
        for lr in ("0.1", "0.2"):
            done = subprocess.run(
                [sys.executable, str(script), lr, "finish"],
                env=server.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            ids.append(done.stdout.strip())
        listed = server.cli("runs", "list", "--order-by", "metrics.loss desc", "--json")
        assert listed.returncode == 0, listed.stderr
        runs = json.loads(listed.stdout)
        assert [r["id"] for r in runs] == [ids[1], ids[0]]
        assert runs[0]["status"] == "FINISHED"
        assert runs[0]["metrics"]["loss"] == pytest.approx(0.2 / 50)
        assert "source_sha256" in runs[0]["code_version"]
        filtered = server.cli("runs", "list", "-f", "params.lr = 0.1", "--json")
        assert [r["id"] for r in json.loads(filtered.stdout)] == [ids[0]]
        shown = server.cli("runs", "show", ids[0])
        assert shown.returncode == 0, shown.stderr
        assert "FINISHED" in shown.stdout
        compared = server.cli("runs", "compare", *ids)
        assert "params.lr" in compared.stdout
        assert "metrics.loss" in compared.stdout
        bad = server.cli("runs", "list", "-f", "metrics.loss ~ 1")
        assert bad.returncode == 1
        assert bad.stderr.startswith("error: invalid filter")
        missing = server.cli("runs", "show", "0" * 32)
        assert missing.returncode == 1
        assert "not found" in missing.stderr


def test_a_killed_training_process_leaves_a_lost_run(tmp_path: Path) -> None:
    env = {
        "LOOPML_TRACKING_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
        "LOOPML_SERVER_MAINTENANCE_INTERVAL_S": "0.5",
    }
    command = [sys.executable, str(_script(tmp_path)), "0.1", "hang"]
    with (
        running_server(tmp_path, env) as server,
        subprocess.Popen(command, env=server.env, stdout=subprocess.PIPE, text=True) as proc,
        Client(server.url) as client,
    ):
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        first = client.runs.get(run_id)
        assert first.status == "RUNNING", first

        def beaten() -> Run | None:  # the server recorded three more heartbeats
            now = client.runs.get(run_id)
            return now if now.heartbeat_at >= first.heartbeat_at + timedelta(seconds=1.5) else None

        # What keeps a live run RUNNING: its heartbeats reach the server, and it is RUNNING.
        beating = eventually(beaten, 60, "the script's heartbeats to be recorded")
        assert beating.status == "RUNNING", beating
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Its heartbeats stop, and the server marks it LOST past the heartbeat timeout.
        eventually(
            lambda: client.runs.get(run_id).status != "RUNNING",
            60,
            "the killed run to leave RUNNING",
            interval_s=0.1,
        )
        run = client.runs.get(run_id)
    assert run.status == "LOST"
    assert run.end_time is not None
    assert run.metrics is not None
    assert run.metrics["loss"] == pytest.approx(0.1 / 50)
