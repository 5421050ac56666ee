"""README.md's Quickstart and tour, run as written: every ``bash`` and ``python`` block, in
order, against a real ``loopml up`` (only its URL is replaced by the test server's) and the
real NATS, with nothing else installed (no ``nats`` CLI). A block right after
``<!-- not run by tests/e2e/test_readme.py ... -->`` is skipped (``make run``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.brokers import jetstream_capturing
from tests.waiting import eventually

from .conftest import RunningServer, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

README = Path(__file__).parents[2] / "README.md"
BLOCK = re.compile(
    r"(<!-- not run by tests/e2e/test_readme\.py[^>]*-->\n)?```(bash|python)\n(.*?)```", re.S
)
README_URL = "http://127.0.0.1:8765"
README_SUBJECT = "orders.*"
README_JETSTREAM = "loopml-churn-orders-in"
"""What the README's stream block makes on the shared NATS: ``--create-stream`` names the
JetStream stream after the project and the stream."""


def blocks(text: str) -> list[tuple[str, str]]:
    """The README's blocks to run, as (language, code), in order."""
    return [(m.group(2), m.group(3)) for m in BLOCK.finditer(text) if not m.group(1)]


@pytest.fixture
def readme_jetstream(nats_server: str) -> Iterator[None]:
    """The README's JetStream stream, absent before (a run's leftover removed: its messages
    would be consumed again) and removed after."""
    other = asyncio.run(jetstream_capturing(nats_server, README_SUBJECT, README_JETSTREAM))
    assert other is None, f"the JetStream stream {other} on {nats_server} captures orders.*"
    yield
    asyncio.run(jetstream_capturing(nats_server, README_SUBJECT, README_JETSTREAM))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home: Path = tmp_path_factory.mktemp("readme-home")
    with running_server(home) as running:
        yield running


def _run(server: RunningServer, language: str, code: str, cwd: Path) -> str:
    code = code.replace(README_URL, server.url)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**server.env, "PATH": path}
    if language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"README block failed:\n{code}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _paste(line: str) -> dict[str, object]:
    pasted = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
    answer: dict[str, object] = json.loads(pasted.stdout)
    return answer


def _streamed(server: RunningServer) -> int:
    shown = server.cli("streams", "show", "orders-in", "-p", "churn", "--json")
    assert shown.returncode == 0, shown.stderr
    messages: int = json.loads(shown.stdout)["stats"]["messages"]
    return messages


@pytest.mark.timeout(600)
def test_the_readme_runs_as_written(
    server: RunningServer, readme_jetstream: None, tmp_path: Path
) -> None:
    found = blocks(README.read_text(encoding="utf-8"))
    assert [language for language, _ in found].count("bash") >= 4
    outputs: list[str] = []
    for language, code in found:
        out = _run(server, language, code, tmp_path)
        outputs.append(out)
        if "loopml deploy " in code:
            # The curl line `loopml deploy` printed works when pasted.
            curl = next(line for line in out.splitlines() if line.startswith("curl -s "))
            assert "/projects/churn/deployments/churn-api/predict" in curl
            assert _paste(curl)["version"] == 1
            assert re.search(r"churn-api\W+ready\W+churn@champion", out), out  # loopml status
        if "loopml streams create" in code:
            # The stream made its JetStream stream, and the 1,000 messages land, as the
            # README says after the block.
            made = f"JetStream stream {README_JETSTREAM} created over '{README_SUBJECT}'"
            assert made in out, out
            eventually(lambda: _streamed(server) == 1000, 120, "1000 messages committed")
            counted = server.cli("sql", "SELECT count(*) FROM orders", "-p", "churn")
            assert counted.returncode == 0, counted.stderr
            assert re.search(r"\b1000\b", counted.stdout), counted.stdout
        if "loopml models list" in code:
            # Your model and AutoML's are versions of the same model, in the same project.
            assert re.search(r"churn\W+2\W+champion=1", out), out
    everything = "\n".join(outputs)
    assert "churn@champion -> 1" in everything
    assert re.search(r"registered churn/2 from run [0-9a-f]{32}", everything)
    # The last block stopped the server: `loopml down` waited for it to exit cleanly.
    assert "stopped loopml at" in outputs[-1]
    assert server.process.poll() is not None
