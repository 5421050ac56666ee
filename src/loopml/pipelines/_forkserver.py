"""The local executor's fork server: ``python -m loopml.pipelines._forkserver WORKER_PID``.

A step's process spends most of its start-up importing loopml and building the settings'
and pipelines' pydantic models (0.5 s of a 0.6 s dispatch on a busy two-core machine, the
step's first line 0.01 s after the process started). This process does that once, then
forks one child per attempt, which starts from the imported modules and runs exactly what
``python -m loopml.pipelines._child`` runs: the same task and result files, a session of
its own, stdin from ``/dev/null``, stdout and stderr to the attempt's log, the worker's
environment and working folder as they were when it asked.

What is imported before the fork is only what every step's child imports anyway (loopml's
settings and pipeline modules, pydantic; no NumPy, Arrow or thread pools, so nothing in it
holds a lock or a thread a fork would copy). The server is single-threaded.

It talks over its stdin and stdout, one JSON object a line:

- in: ``{"task": path, "result": path, "log": path, "env": {...}, "cwd": path}``;
- out: ``{"ready": true}`` once imported, ``{"pid": n}`` (or ``{"error": text}``) for each
  request in order, ``{"exited": n, "code": c}`` when child ``n`` ends (``c`` negative for a
  signal, as ``subprocess`` says it).

It exits when its stdin closes or its worker is gone; its children then see their parent
gone and exit (``_child``'s watch), as they did when the worker itself was their parent.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import signal
import sys
import traceback
from typing import Any

WATCH_INTERVAL_S = 0.2
# What every step's child imports before it reads its task (``_child.main``): imported here
# once, so a forked child starts with them.
PRELOAD = (
    "loopml.pipelines._child",
    "loopml.pipelines._run_step",
    "loopml.pipelines._step",
    "loopml.pipelines.base",
    "loopml.settings",
)


def _say(message: dict[str, Any]) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _say({"exited": pid, "code": _exit_code(status)})


_STARTED_IN = os.getcwd()


def _import_path(cwd: str) -> None:
    """``sys.path`` as ``python -m`` started in ``cwd`` with this ``PYTHONPATH`` has it:
    the folder first, then ``PYTHONPATH``'s entries, then this interpreter's own. Other
    variables Python reads only at start-up (``PYTHONWARNINGS``, ``PYTHONHASHSEED``) are
    as they were when the worker started the server."""
    if sys.path and sys.path[0] in ("", _STARTED_IN):
        sys.path[0] = cwd
    extra = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    for entry in reversed(extra):
        if entry not in sys.path:
            sys.path.insert(1, entry)


def _run_child(request: dict[str, Any], closing: list[int]) -> None:
    """In the forked child: become what ``python -u -m loopml.pipelines._child`` was, run
    the attempt, exit. Never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in closing:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        # Unbuffered, as ``python -u``: the log shows each line as it is written.
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        _import_path(request["cwd"])
        from loopml.pipelines import _child

        code = _child.main(["_child", request["task"], request["result"], str(os.getppid())])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # exiting either way
                stream.flush()
        os._exit(code)


def serve(worker: int) -> None:
    """Fork a child for each request on stdin until stdin closes or ``worker`` is gone."""
    # The worker's terminal's Ctrl-C and its process group's signals are the worker's to
    # handle (it stops its steps with their grace); this process started in a session of
    # its own, and ignores SIGINT besides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in PRELOAD:
        __import__(module)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select through the pipe
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    closing = [wake_r, wake_w, selector.fileno()]
    _say({"ready": True})
    pending = b""
    while os.getppid() == worker:
        for key, _ in selector.select(WATCH_INTERVAL_S):
            if key.fd == wake_r:
                while True:
                    try:
                        if not os.read(wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    _say({"error": f"fork failed: {exc}"})
                    continue
                if pid == 0:
                    _run_child(request, closing)
                _say({"pid": pid})
        _reap()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
