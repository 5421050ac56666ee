"""The worker's side of the fork server (``loopml.pipelines._forkserver``): one per
interpreter per worker process, started with the first local executor, asked for a child per
attempt. A ``ForkedProcess`` answers ``pid``, ``poll`` and ``wait`` as the
``subprocess.Popen`` it stands in for, so the local executor's handle treats both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import IO

from loopml.pipelines._child import ORPHANED_EXIT_CODE

_SERVER = "loopml.pipelines._forkserver"
# How long a request waits for its child's pid: the server imports loopml first (0.5-3 s
# on a busy machine), then forks in milliseconds.
SPAWN_TIMEOUT_S = 60.0


class ForkServerError(OSError):
    """The fork server is gone or did not answer: the caller starts a fresh interpreter."""


class ForkedProcess:
    """A child of the fork server."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked step {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def exited(self, code: int) -> None:
        if not self._done.is_set():
            self.returncode = code
            self._done.set()


class ForkServer:
    """One ``python -m loopml.pipelines._forkserver`` and the thread that reads its news."""

    def __init__(self, python: str) -> None:
        self._process = subprocess.Popen(
            [python, "-m", _SERVER, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self._replies: queue.Queue[ForkedProcess | ForkServerError] = queue.Queue()
        self._children: dict[int, ForkedProcess] = {}
        self._children_lock = threading.Lock()
        self.alive = True
        stdout = self._process.stdout
        assert stdout is not None
        threading.Thread(
            target=self._read, args=(stdout,), name="loopml-forkserver", daemon=True
        ).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            news = json.loads(line)
            if "pid" in news:
                child = ForkedProcess(int(news["pid"]))
                with self._children_lock:
                    self._children[child.pid] = child
                self._replies.put(child)
            elif "exited" in news:
                with self._children_lock:
                    exited = self._children.pop(int(news["exited"]), None)
                if exited is not None:
                    exited.exited(int(news["code"]))
            elif "error" in news:
                self._replies.put(ForkServerError(news["error"]))
        # The server is gone: its children see that and exit (``_child``'s watch).
        self.close()
        stdout.close()
        self._replies.put(ForkServerError("the fork server exited"))
        with self._children_lock:
            orphans, self._children = list(self._children.values()), {}
        for child in orphans:
            child.exited(ORPHANED_EXIT_CODE)

    def spawn(self, task: Path, result: Path, log: Path) -> ForkedProcess:
        """A child running the attempt in ``task``; raises ``ForkServerError`` if the server
        is gone or silent."""
        request = {
            "task": str(task),
            "result": str(result),
            "log": str(log),
            "env": dict(os.environ),
            "cwd": os.getcwd(),
        }
        with self._lock:
            stdin = self._process.stdin
            if not self.alive or stdin is None:
                raise ForkServerError("the fork server exited")
            try:
                stdin.write((json.dumps(request) + "\n").encode())
                stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise ForkServerError(f"the fork server exited: {exc}") from exc
            try:
                reply = self._replies.get(timeout=SPAWN_TIMEOUT_S)
            except queue.Empty as exc:
                self.close()
                raise ForkServerError(f"no answer in {SPAWN_TIMEOUT_S:g} s") from exc
        if isinstance(reply, ForkServerError):
            raise reply
        return reply

    def close(self) -> None:
        self.alive = False
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()


_servers: dict[str, ForkServer] = {}
_servers_lock = threading.Lock()


def server_for(python: str) -> ForkServer:
    """This process's fork server for ``python``, started if none is running."""
    with _servers_lock:
        running = _servers.get(python)
        if running is None or not running.alive:
            running = _servers[python] = ForkServer(python)
        return running


def _forget_after_fork() -> None:
    # A forked copy of this process does not own the servers' pipes (nor the lock, which
    # another thread may have held at the fork).
    global _servers_lock
    _servers.clear()
    _servers_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
