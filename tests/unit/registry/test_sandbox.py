"""The converter's sandbox, run directly: one sandbox's process limit is its own."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import pytest

from loopml.registry.sandbox import SandboxLimits, SandboxResult, interpreter_folders, run_sandboxed
from tests.waiting import eventually

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("prlimit") is None,
    reason="needs bubblewrap and prlimit (Debian's bubblewrap and util-linux)",
)

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
