"""A real ``loopml up`` keeps its own log in ``<home>/logs/loopml.log`` (private), and
serves it back searched by text and level, through the API and ``loopml logs --platform``."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx

import loopml
from tests.conftest import free_port
from tests.waiting import REQUEST_GUARD_S, eventually

CLI = [sys.executable, "-c", "from loopml.cli.main import main; main()"]


def _environment(home: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(Path(loopml.__file__).parents[1]),
        "LOOPML_HOME": str(home),
        "LOOPML_SERVER_PORT": str(port),
        "LOOPML_CLIENT_URL": f"http://127.0.0.1:{port}",
        "LOOPML_SERVER_STREAMS": "false",
        "LOOPML_MONITOR_ENABLED": "false",
    }


def _ready(process: subprocess.Popen[str], url: str) -> bool:
    eventually(
        lambda: (
            process.poll() is not None or httpx.get(f"{url}/api/v1/health", timeout=2).is_success
        ),
        60,
        f"{url} to answer /api/v1/health",
        interval_s=0.2,
    )
    return process.poll() is None


def test_loopml_up_keeps_its_log_in_a_private_file_and_serves_it_searched(
    tmp_path: Path,
) -> None:
    home, port = tmp_path / "home", free_port()
    environment = _environment(home, port)
    url = environment["LOOPML_CLIENT_URL"]
    with subprocess.Popen(
        [*CLI, "up"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert _ready(process, url), "loopml up did not become ready"
            path = home / "logs" / "loopml.log"
            written = path.read_text()
            assert " INFO uvicorn.error: Application startup complete." in written
            assert "Uvicorn running on http://127.0.0.1:" in written
            if os.name != "nt":
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
                assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

            found = httpx.get(
                f"{url}/api/v1/logs", params={"grep": "startup COMPLETE"}, timeout=REQUEST_GUARD_S
            ).json()
            assert len(found["lines"]) == 1
            assert found["lines"][0].endswith("Application startup complete.")
            errors = httpx.get(
                f"{url}/api/v1/logs", params={"level": "error"}, timeout=REQUEST_GUARD_S
            ).json()
            assert not any("startup" in line for line in errors["lines"])

            cli = subprocess.run(
                [*CLI, "logs", "--platform", "--grep", "uvicorn running", "-n", "5"],
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert cli.returncode == 0, cli.stderr
            assert [line for line in cli.stdout.splitlines() if "Uvicorn running on" in line]
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)


def test_an_empty_log_file_setting_keeps_the_log_on_stderr_only(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    environment = {**_environment(home, port), "LOOPML_SERVER_LOG_FILE": ""}
    with subprocess.Popen(
        [*CLI, "up"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert _ready(process, environment["LOOPML_CLIENT_URL"])
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    assert "Application startup complete." in stderr
    assert not (home / "logs").exists()
