"""``loopml pipelines`` against a real ``loopml up``, whose embedded worker runs the steps."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually

from .conftest import RunningServer, running_server

pytestmark = pytest.mark.e2e

STEPS = """
import time
from loopml.pipelines import step

@step
def greet(ctx, name):
    print(f"hello {name}")
    return {"greeting": f"hello {name}"}

@step
def nap(ctx, seconds):
    time.sleep(seconds)
"""
GOOD = """\
name: greeter
inputs:
  who: {type: string, default: world}
outputs:
  greeting: ${{ steps.greet.outputs.greeting }}
steps:
  - name: greet
    python: cli_steps:greet
    with: {name: "${{ inputs.who }}"}
    outputs: {greeting: string}
  - name: rest
    python: cli_steps:nap
    with: {seconds: 0}
    needs: [greet]
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("home")
    code = home / "code"
    code.mkdir()
    (code / "cli_steps.py").write_text(textwrap.dedent(STEPS))
    with running_server(home, {"PYTHONPATH": str(code)}) as running:
        yield running


# Ten CLI calls, each a fresh interpreter importing loopml: about 1 s each on a quiet
# machine, 10 s at a load average of 12, where the suite's 120 s cut it off mid-call.
@pytest.mark.timeout(300)
def test_apply_run_show_and_logs(up: RunningServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.replace("inputs.who", "inputs.whom").replace("needs: [greet]", "needs: [x]")
    )
    refused = up.cli("pipelines", "apply", str(bad))
    assert refused.returncode == 1
    assert f"{bad} was refused (2 problems):" in refused.stderr
    assert f"{bad}:9: steps.greet.with.name: unknown input 'whom'" in refused.stderr
    assert f"{bad}:14: steps.rest.needs[0]: unknown step 'x' in needs" in refused.stderr
    assert "Traceback" not in refused.stderr

    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    applied = up.cli("pipelines", "apply", str(good))
    assert applied.returncode == 0, applied.stderr
    assert "applied greeter version 1: 2 steps (greet -> rest)" in applied.stdout
    assert "unchanged: still version 1" in up.cli("pipelines", "apply", str(good)).stdout

    ran = up.cli("pipelines", "run", "greeter", "--input", "who=cli", "--wait", "--poll", "0.1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCEEDED" in ran.stdout
    assert "greeting=hello cli" in ran.stdout

    runs = json.loads(up.cli("pipelines", "runs", "greeter", "--json").stdout)
    assert [(r["status"], r["inputs"]) for r in runs] == [("SUCCEEDED", {"who": "cli"})]
    run_id = runs[0]["id"]
    shown = up.cli("pipelines", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "greet" in shown.stdout
    assert "rest" in shown.stdout
    logs = up.cli("pipelines", "logs", run_id, "greet")
    assert logs.returncode == 0, logs.stderr
    assert "hello cli" in logs.stdout
    every = up.cli("pipelines", "logs", run_id)
    assert "==> greet (attempt 1) <==" in every.stdout
    assert "==> rest (attempt 1) <==" in every.stdout
    listed = up.cli("pipelines", "list")
    assert "greeter" in listed.stdout
    spec = up.cli("pipelines", "show", "greeter")
    assert "cli_steps:greet" in spec.stdout


def test_cancel_a_running_pipeline(up: RunningServer, tmp_path: Path) -> None:
    spec = tmp_path / "sleepy.yaml"
    spec.write_text(
        "name: sleepy\nsteps:\n  - {name: nap, python: 'cli_steps:nap', with: {seconds: 120}}\n"
    )
    assert up.cli("pipelines", "apply", str(spec)).returncode == 0
    started = json.loads(up.cli("pipelines", "run", "sleepy", "--json").stdout)

    def shown() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            up.cli("pipelines", "show", started["id"], "--json").stdout
        )
        return found

    eventually(
        lambda: shown()["status"] == "RUNNING",
        60,
        "the run to be RUNNING",
        interval_s=0.2,
        describe=lambda: shown()["status"],
    )
    cancelled = up.cli("pipelines", "cancel", started["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    found = eventually(
        lambda: (run := shown())["status"] == "CANCELLED" and run,
        60,
        "the run to be CANCELLED",
        interval_s=0.2,
        describe=lambda: shown()["status"],
    )
    assert found["steps"][0]["status"] == "CANCELLED", found["steps"]
    missing = up.cli("pipelines", "show", "0" * 32)
    assert missing.returncode == 1
    assert "not found" in missing.stderr


def test_schedules_and_triggers_from_the_command_line(up: RunningServer, tmp_path: Path) -> None:
    # A pipeline of its own: the module's tests share one server, in any order, and
    # test_apply_run_show_and_logs counts greeter's versions and runs.
    spec = tmp_path / "good.yaml"
    spec.write_text(GOOD.replace("name: greeter\n", "name: waker\n", 1))
    assert up.cli("pipelines", "apply", str(spec)).returncode == 0

    made = up.cli(
        "schedules",
        "create",
        "nightly",
        "--pipeline",
        "waker",
        "--cron",
        "0 3 * * *",
        "--tz",
        "Europe/Paris",
        "--input",
        "who=night",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    schedule = json.loads(made.stdout)
    assert (schedule["timezone"], schedule["inputs"], schedule["enabled"]) == (
        "Europe/Paris",
        {"who": "night"},
        True,
    )
    bad = up.cli("schedules", "create", "broken", "--pipeline", "waker", "--cron", "61 * * * *")
    assert bad.returncode == 1
    assert "cron" in bad.stderr
    assert "Traceback" not in bad.stderr
    paused = up.cli("schedules", "pause", "nightly")
    assert "paused" in paused.stdout, paused.stderr
    listed = up.cli("schedules", "list")
    assert "nightly" in listed.stdout
    assert "paused" in listed.stdout
    assert "enabled" in up.cli("schedules", "resume", "nightly").stdout
    assert up.cli("schedules", "delete", "nightly").returncode == 0
    assert up.cli("schedules", "show", "nightly").returncode == 1

    hook = up.cli(
        "triggers",
        "create",
        "hook",
        "--pipeline",
        "waker",
        "--on",
        "webhook",
        "--input",
        "who=hook",
        "--json",
    )
    assert hook.returncode == 0, hook.stderr
    trigger = json.loads(hook.stdout)
    assert trigger["secret"]
    wrong = up.cli("triggers", "fire", trigger["id"], "--secret", "not-it")
    assert wrong.returncode == 1
    assert "secret" in wrong.stderr.lower()
    fired = up.cli("triggers", "fire", trigger["id"], "--secret", trigger["secret"], "--json")
    assert fired.returncode == 0, fired.stderr
    run_id = json.loads(fired.stdout)["run_id"]

    def status() -> str:
        runs = json.loads(up.cli("pipelines", "runs", "waker", "--json").stdout)
        return str(next((r["status"] for r in runs if r["id"] == run_id), ""))

    ended = eventually(
        lambda: (found := status()) in ("SUCCEEDED", "FAILED", "CANCELLED") and found,
        60,
        f"the fired run {run_id} to end",
        interval_s=0.3,
    )
    assert ended == "SUCCEEDED", ended
    shown = json.loads(up.cli("triggers", "show", "hook", "--json").stdout)
    assert [(f["outcome"], f["run_id"]) for f in shown["history"]] == [("started", run_id)]
    assert shown["secret"] is None
    text = up.cli("triggers", "show", "hook").stdout
    assert "started" in text
    assert "secret (shown once)" not in text  # only at creation
    assert up.cli("triggers", "delete", "hook").returncode == 0
