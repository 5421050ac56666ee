"""``server.log_format = "json"``: ``loopml up`` writes its own log as JSON lines on stderr,
and the same lines in its log file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

import loopml
from tests.conftest import free_port
from tests.waiting import eventually


def _environment(home: Path, port: int, log_format: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(Path(loopml.__file__).parents[1]),
        "LOOPML_HOME": str(home),
        "LOOPML_SERVER_PORT": str(port),
        "LOOPML_SERVER_LOG_FORMAT": log_format,
        "LOOPML_SERVER_STREAMS": "false",
        "LOOPML_MONITOR_ENABLED": "false",
    }


def test_loopml_up_writes_json_lines_on_stderr(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", "from loopml.cli.main import main; main()", "up"]
    environment = _environment(tmp_path / "home", port, "json")
    with subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            # Done once it answers, or once it ended (its stderr, checked below, says why).
            eventually(
                lambda: (
                    process.poll() is not None
                    or httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).is_success
                ),
                60,
                "loopml up to answer /api/v1/health",
                interval_s=0.2,
            )
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "loopml up wrote nothing on stderr"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= set(entry)
    messages = [(e["logger"], e["level"], e["message"]) for e in entries]
    assert ("uvicorn.error", "info", "Application startup complete.") in messages
    assert any(m.startswith("Uvicorn running on") for _, _, m in messages)
    kept = (tmp_path / "home" / "logs" / "loopml.log").read_text().splitlines()
    # The file holds what stderr showed, one JSON object per line. Two handlers write them, so
    # lines logged at the same moment from two threads may reach each in a different order.
    assert sorted(kept) == sorted(lines)
