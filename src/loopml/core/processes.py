"""Whether a process still runs, asked the same way everywhere (the CLI's pid file, the
local executor's orphaned attempt folders, the MLflow packager's recovery)."""

from __future__ import annotations

import contextlib
import os
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
