"""Whether a process still runs, asked the same way everywhere (the CLI's pid file, the
local executor's orphaned attempt folders, the MLflow packager's recovery); a child process
stopped the same way everywhere (the stream consumers, the monitor process)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie; one of another
    user's (``kill`` refused) counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def terminate(process: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM ``process`` (if it still runs) and wait for it, killing it past ``grace_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
