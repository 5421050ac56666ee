"""The converter's sandbox, run directly: one sandbox's process limit is its own."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

from loopml.registry.sandbox import SandboxLimits, SandboxResult, interpreter_folders, run_sandboxed
from tests.conftest import missing_service
from tests.waiting import eventually


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    """Skipped without ``bwrap``, failed under ``LOOPML_REQUIRE_SERVICES=1`` (CI installs it)."""
    if shutil.which("bwrap") is None or shutil.which("prlimit") is None:
        missing_service("bubblewrap and prlimit (apt-get install bubblewrap util-linux)")


LIMITS = SandboxLimits(
    timeout_s=120, cpu_s=60, memory_bytes=2 << 30, max_processes=16, max_file_bytes=1 << 20
)

# Forks until the process limit refuses, says how many it made, then holds them until the
# test drops a file in its scratch folder.
BOMB = """
import os, time
made = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(120)
            os._exit(0)
        made += 1
except OSError as exc:
    open("/scratch/full", "w").write(f"{made} processes, then {exc}")
while not os.path.exists("/scratch/stop"):
    time.sleep(0.05)
"""

THREADS = """
import threading
threads = [threading.Thread(target=lambda: None) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("4 threads started")
"""


def _run(code: str, scratch: Path) -> SandboxResult:
    scratch.mkdir()
    python = Path(sys.executable)
    return run_sandboxed(
        [str(python), "-c", code],
        scratch=scratch,
        read_only=interpreter_folders(python),
        hidden=[],
        limits=LIMITS,
    )


def test_a_fork_bomb_in_one_sandbox_leaves_another_free_to_start_threads(tmp_path: Path) -> None:
    # Under one shared uid (65534, before), RLIMIT_NPROC counted both sandboxes' processes
    # together: with the bomb's sandbox at its limit, the other could not start a thread.
    bombed: list[SandboxResult] = []
    bomb = threading.Thread(target=lambda: bombed.append(_run(BOMB, tmp_path / "bomb")))
    bomb.start()
    try:
        full = tmp_path / "bomb" / "full"
        said = eventually(
            lambda: full.exists() and full.read_text(),
            60,
            "the fork bomb to reach its sandbox's process limit",
        )
        assert "Resource temporarily unavailable" in said, said
        beside = _run(THREADS, tmp_path / "beside")
        assert beside.returncode == 0, beside.output
        assert "4 threads started" in beside.output
    finally:
        (tmp_path / "bomb").joinpath("stop").write_text("")
        bomb.join(timeout=LIMITS.timeout_s + 10)
    assert len(bombed) == 1, "the bomb's sandbox did not end"
    assert not bombed[0].timed_out, bombed


def test_with_the_network_it_reaches_the_host_and_writes_only_its_own_folder(
    tmp_path: Path,
) -> None:
    """The sandbox pip builds an environment in: the host's network (a listener of the
    test's on loopback accepts), its folder writable at its own path, the folder beside it
    shown read-only, and nothing else of the host writable."""
    env, beside = tmp_path / "envs" / "env", tmp_path / "envs" / "beside"
    env.mkdir(parents=True)
    beside.mkdir()
    (tmp_path / "scratch").mkdir()
    code = f"""
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30).close()
open({str(env / "made")!r}, "w").write("x")
for path in ({str(beside / "x")!r}, {str(tmp_path / "x")!r}):
    try:
        open(path, "w")
    except OSError as exc:
        print(path, type(exc).__name__)
"""
    python = Path(sys.executable)
    with socket.create_server(("127.0.0.1", 0)) as server:
        result = run_sandboxed(
            [str(python), "-c", code, str(server.getsockname()[1])],
            scratch=tmp_path / "scratch",
            read_only=[*interpreter_folders(python), beside],
            hidden=[],
            limits=LIMITS,
            writable=[env],
            network=True,
        )
        server.settimeout(5)
        server.accept()[0].close()  # the connection the sandbox made, queued
    assert result.returncode == 0, result.output
    assert (env / "made").read_text() == "x"
    assert f"{beside / 'x'} OSError" in result.output, result.output
    assert not (beside / "x").exists()
    assert not (tmp_path / "x").exists()
