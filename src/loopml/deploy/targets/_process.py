"""One replica process of the local target, and the log file its deployment's replicas share.

Only the local target's supervisor thread starts, probes and stops replicas; ``Replica``
is its bookkeeping for one slot (revision, index), across restarts: each start gets a free
loopback port and a new ``Backend`` once it answers ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from loopml.deploy.targets.base import RevisionPackage
from loopml.serve.gateway.routing import Backend

_TAIL_BLOCK = 64 * 1024


class ReplicaState(StrEnum):
    """Where one replica slot stands."""

    WAITING = "waiting"  # not running: never started, or backing off after a crash
    STARTING = "starting"  # running, not answering ready yet
    READY = "ready"  # in the routes
    DRAINING = "draining"  # out of the routes, finishing requests in flight
    STOPPING = "stopping"  # SIGTERM sent
    STOPPED = "stopped"  # gone for good (scaled down, deployment deleted)


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (the replica binds it a moment later; a lost race
    makes it exit, and it is restarted on another port)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Replica:
    """Replica ``index`` of one revision: its process, state and restart bookkeeping."""

    def __init__(self, package: RevisionPackage, index: int) -> None:
        self.package = package
        self.index = index
        self.state = ReplicaState.WAITING
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.backend: Backend | None = None
        self.since = 0.0  # when the current state began (monotonic)
        self.started_at = 0.0
        self.ready_at = 0.0
        self.retry_at = 0.0
        self.failures = 0  # consecutive crashes, for the backoff
        self.restarts = 0  # crashes since the slot first started (what monitoring shows)
        self.probe_failures = 0

    @property
    def label(self) -> str:
        return f"revision {self.package.revision} replica {self.index}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(
        self,
        command: Sequence[str],
        log_path: Path,
        host: str,
        deployment: str,
        now: float,
        extra: Sequence[str] = (),
    ) -> None:
        """Start the model server on a free port, its output appended to ``log_path``."""
        package = self.package
        if package.path is None:
            raise ValueError(f"{self.label}: the local target needs a fetched package")
        self.port = free_port(host)
        args = [
            *command,
            "--package",
            package.path,
            "--manifest-sha256",
            package.manifest_sha256,
            "--name",
            package.model,
            "--version",
            str(package.version),
            "--deployment",
            deployment,
            "--port",
            str(self.port),
            "--host",
            host,
            *extra,
        ]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the platform's terminal is the platform's to
                # handle (it stops replicas gracefully), not delivered to them all at once.
                start_new_session=True,
                close_fds=True,
            )
        self.backend = None
        self.state = ReplicaState.STARTING
        self.since = self.started_at = now
        self.probe_failures = 0

    def poll(self) -> int | None:
        """The exit status once the process has ended, else ``None``."""
        if self.process is None:
            return None
        return self.process.poll()

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def mark_ready(self, now: float) -> Backend:
        package = self.package
        self.backend = Backend(self.url, package.revision, package.model, package.version)
        self.state = ReplicaState.READY
        self.since = self.ready_at = now
        return self.backend

    def reaped(self) -> None:
        """Forget the ended process."""
        if self.process is not None:
            self.process.wait()
        self.process = None
        self.backend = None


def python_command(python: str | None = None) -> list[str]:
    """The command prefix that runs one replica tied to this process."""
    return [
        python or sys.executable,
        "-m",
        "loopml.deploy.targets._replica",
        "--parent-pid",
        str(os.getpid()),
        "--",
    ]


def log_line(path: Path, text: str) -> None:
    """Append one line of the supervisor's own to a deployment's log."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{stamp} [loopml] {text}\n")


def rotate(path: Path, max_bytes: int) -> None:
    """Move ``path`` to ``path.1`` once it is larger than ``max_bytes``."""
    try:
        if path.stat().st_size > max_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (its rotated predecessor included)."""
    found: list[str] = []
    for candidate in (path, path.with_name(path.name + ".1")):
        if len(found) >= lines:
            break
        found = _tail_one(candidate, lines - len(found)) + found
    return found


def _tail_one(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            end = file.tell()
            data = b""
            while end > 0 and data.count(b"\n") <= lines:
                step = min(_TAIL_BLOCK, end)
                end -= step
                file.seek(end)
                data = file.read(step) + data
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-lines:] if lines > 0 else []
