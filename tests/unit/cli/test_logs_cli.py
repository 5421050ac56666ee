"""``loopml logs``: a deployment's replica log and a pipeline run's step logs, searched on
the server and followed, against a real platform."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopml
from loopml.core.pipelines import RunStatus
from loopml.deploy.targets._process import rotate

from .conftest import Platform, make_deployment

PROJECT = "logs"
STEPS = """
import logging, time
from loopml.pipelines import step

@step
def chatty(ctx, seconds):
    print("first words", flush=True)
    logging.getLogger("chatty").error("something broke")
    time.sleep(seconds)
    print("last words", flush=True)
"""
SPEC = """\
name: chatter
inputs:
  seconds: {type: number, default: 0}
steps:
  - name: chatty
    python: cli_log_steps:chatty
    with: {seconds: "${{ inputs.seconds }}"}
"""


# A child of a shell's background job inherits SIGINT ignored (bash does that without job
# control, as CI may run us), and Python keeps an inherited SIG_IGN: the CLI would never see
# Ctrl-C. The child puts Python's own handler back first, as a terminal's process has it.
FOLLOW = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from loopml.cli.main import main; main()"
)


def _follow(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``loopml ARGS`` in a child that takes Ctrl-C as a terminal would deliver it."""
    return subprocess.Popen(
        [sys.executable, "-c", FOLLOW, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _interrupt(process: subprocess.Popen[str]) -> int:
    """Ctrl-C, then its exit status; killed (and the test fails) if it ignores it."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("loopml logs --follow ignored Ctrl-C for 30 s") from None


LINES = [
    "INFO:     Started server process [4242]",
    'INFO:     127.0.0.1:5000 - "POST /predict HTTP/1.1" 200 OK',
    "ERROR:    Exception in ASGI application",
    "ValueError: column 'age' is missing",
]


@pytest.fixture(scope="module")
def deployed(platform: Platform) -> Path:
    """Deployment ``churn-api`` (made once for the module); the path of its replica log."""
    with platform.client() as client:
        client.projects.create(PROJECT)
    make_deployment(platform, PROJECT)
    path = platform.ctx.settings.home / "deployments" / PROJECT / "churn-api" / "replicas.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def log(deployed: Path) -> Path:
    """``churn-api``'s replica log holding ``LINES`` and nothing else: the follow test
    appends to it and rotates it, which a test after it must not read (random order)."""
    deployed.with_name(deployed.name + ".1").unlink(missing_ok=True)
    deployed.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    return deployed


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "cli_log_steps.py").write_text(textwrap.dedent(STEPS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("cli_log_steps", None)


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in lines)


def test_a_deployments_log_searched_by_text_and_level(platform: Platform, log: Path) -> None:
    everything = platform.cli("logs", "churn-api", "-p", PROJECT)
    assert everything.exit_code == 0, everything.output
    assert everything.output.splitlines()[-4:] == LINES
    found = platform.cli("logs", "churn-api", "-p", PROJECT, "--grep", "POST /PREDICT")
    assert found.output.splitlines() == [LINES[1]]
    errors = platform.cli("logs", "churn-api", "-p", PROJECT, "--level", "error", "-n", "1")
    assert errors.output.splitlines() == [LINES[3]]  # the ERROR line's continuation


def test_what_is_neither_a_deployment_nor_a_run_is_explained(platform: Platform, log: Path) -> None:
    ghost = platform.cli("logs", "ghost", "-p", PROJECT)
    assert ghost.exit_code == 1
    assert "no deployment 'ghost' in project 'logs'" in str(ghost.exception)
    assert "32-character id" in str(ghost.exception)
    run_id = "0" * 32
    missing = platform.cli("logs", run_id, "-p", PROJECT)
    assert f"no pipeline run or deployment '{run_id}'" in str(missing.exception)
    wrong = platform.cli("logs", "churn-api", "-p", PROJECT, "--level", "loud")
    assert wrong.exit_code == 1
    assert "not one of debug, info, warning, error, critical" in str(wrong.exception)
    step = platform.cli("logs", "churn-api", "-p", PROJECT, "--step", "train")
    assert "--step is for a pipeline run" in str(step.exception)


def test_following_a_deployment_prints_each_new_line_once_across_a_rotation(
    platform: Platform, log: Path
) -> None:
    env = {
        **os.environ,
        "LOOPML_CLIENT_URL": platform.url,
        "PYTHONPATH": str(Path(loopml.__file__).parents[1]),
    }
    args = ["logs", "churn-api", "-p", PROJECT, "--follow", "--grep", "predict"]
    with _follow(args, env) as process:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in process.stdout or []:
                lines.put(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert lines.get(timeout=60) == LINES[1]
            _append(log, ["INFO: POST /predict 200 (second)"])
            assert lines.get(timeout=30) == "INFO: POST /predict 200 (second)"
            rotate(log, max_bytes=1)  # the file moves to replicas.log.1, a new one starts
            _append(log, ["INFO: unrelated", "INFO: POST /predict 200 (third)"])
            assert lines.get(timeout=30) == "INFO: POST /predict 200 (third)"
            time.sleep(2.5)  # two more looks: nothing again
            assert lines.empty()
        finally:
            code = _interrupt(process)
            reader.join(10)
        errors = process.stderr.read() if process.stderr else ""
    assert code == 0, errors
    assert errors == ""


def test_a_runs_step_logs_and_following_a_run_until_it_ends(
    platform: Platform, log: Path, steps: None
) -> None:
    with platform.client() as client:
        client.pipelines.apply(SPEC, project=PROJECT)
        done = client.pipelines.run("chatter", project=PROJECT)
        client.pipelines.wait(done.id, timeout_s=60, poll_s=0.1, project=PROJECT)
        running = client.pipelines.run("chatter", inputs={"seconds": 3}, project=PROJECT)

    every = platform.cli("logs", done.id, "-p", PROJECT)
    assert every.exit_code == 0, every.output
    assert "[chatty] first words" in every.output.splitlines()
    assert "[chatty] last words" in every.output.splitlines()
    one = platform.cli("logs", done.id, "-p", PROJECT, "--step", "chatty", "--grep", "WORDS")
    assert one.output.splitlines() == ["first words", "last words"]
    errors = platform.cli("logs", done.id, "-p", PROJECT, "--level", "error")
    # The logging line, and the print that continues it.
    assert [line.split(" chatty: ")[-1] for line in errors.output.splitlines()] == [
        "something broke",
        "[chatty] last words",
    ]
    wrong = platform.cli("logs", done.id, "-p", PROJECT, "--step", "nope")
    assert "has no step 'nope' (its steps: chatty)" in str(wrong.exception)

    followed = platform.cli("logs", running.id, "-p", PROJECT, "--follow", "--grep", "words")
    assert followed.exit_code == 0, followed.output
    assert followed.output.splitlines() == ["[chatty] first words", "[chatty] last words"]
    with platform.client() as client:
        assert client.pipelines.get_run(running.id, project=PROJECT).status == RunStatus.SUCCEEDED


SERVER_LINES = [
    "2026-05-01 10:00:00,000 INFO uvicorn.error: Started server process [4242]",
    "2026-05-01 10:00:01,000 ERROR loopml.monitor: window failed",
    "ValueError: column 'age' is missing",
    "2026-05-01 10:00:02,000 INFO uvicorn.error: Application startup complete.",
]


def test_the_servers_own_log_searched_and_followed(platform: Platform) -> None:
    path = platform.ctx.settings.home / "logs" / "loopml.log"
    path.parent.mkdir(exist_ok=True)
    _append(path, SERVER_LINES)
    errors = platform.cli("logs", "--platform", "--level", "error")
    assert errors.exit_code == 0, errors.output
    assert errors.output.splitlines() == SERVER_LINES[1:3]
    assert platform.cli("logs", "--platform", "-g", "STARTUP", "-n", "1").output.splitlines() == [
        SERVER_LINES[-1]
    ]
    both = platform.cli("logs", "churn-api", "--platform")
    assert "or pass --platform (not both)" in str(both.exception)
    assert "or pass --platform" in str(platform.cli("logs").exception)

    env = {
        **os.environ,
        "LOOPML_CLIENT_URL": platform.url,
        "PYTHONPATH": str(Path(loopml.__file__).parents[1]),
    }
    args = ["logs", "--platform", "-f", "--level", "warning"]
    with _follow(args, env) as process:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in process.stdout or []:
                lines.put(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert [lines.get(timeout=60), lines.get(timeout=60)] == SERVER_LINES[1:3]
            late = "2026-05-01 10:00:03,000 WARNING loopml.automation: schedule nightly is late"
            _append(path, ["2026-05-01 10:00:03,000 INFO loopml.reconciler: quiet", late])
            assert lines.get(timeout=30) == late
        finally:
            code = _interrupt(process)
            reader.join(10)
        stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr
    assert lines.empty()
