"""A child process that dies with its parent: on Linux it asks the kernel for SIGTERM when
the parent exits (``prctl(PR_SET_PDEATHSIG)``), so a platform that is killed, even with
SIGKILL, leaves no orphaned replicas or gateways holding ports and memory."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Ask for SIGTERM when the parent exits; ``False`` when it already has (the process
    was re-parented before the request took effect)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == parent
