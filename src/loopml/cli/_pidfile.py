"""The file ``loopml up`` leaves in its home while it runs, so ``loopml down`` and
``loopml status`` can find it: its process id and URL, as JSON."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loopml.system.processes import alive as alive

PID_FILE = "loopml.pid"


@dataclass(frozen=True)
class RunningServer:
    """A ``loopml up`` process, as its pid file describes it."""

    pid: int
    url: str


def path(home: Path) -> Path:
    """Where the pid file of the server using ``home`` is."""
    return home / PID_FILE


def read(home: Path) -> RunningServer | None:
    """The running server of ``home``; ``None`` when there is none (a stale file from a
    process that is gone is removed)."""
    file = path(home)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        found = RunningServer(pid=int(data["pid"]), url=str(data["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not alive(found.pid):
        file.unlink(missing_ok=True)
        return None
    return found


@contextlib.contextmanager
def held(home: Path, url: str) -> Iterator[None]:
    """Write the pid file for this process while the block runs."""
    file = path(home)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps({"pid": os.getpid(), "url": url}), encoding="utf-8")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(file.read_text(encoding="utf-8"))["pid"] == os.getpid():
                file.unlink()
