"""MLflow example scripts run in the client's own interpreter, each in its own process,
forked from one per client that imported MLflow once (``mlflow_forkserver.py`` says why and
what a child gets). ``run`` answers as ``subprocess.run(..., capture_output=True,
text=True, timeout=...)`` would."""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

FORKSERVER = Path(__file__).parent / "mlflow_forkserver.py"
START_TIMEOUT_S = 300.0
"""How long the server may take to import MLflow (6 to 10 s of CPU; a loaded CI machine)."""


class ForkServer:
    """One client interpreter's fork server, started on first use, stopped at exit."""

    def __init__(self, python: Path) -> None:
        self.python = python
        self._lock = threading.Lock()
        self._log = tempfile.NamedTemporaryFile(prefix="mlflow-forkserver-", suffix=".log")  # noqa: SIM115
        # One BLAS thread: the scripts fit tiny models, and a forked child keeps none of
        # its parent's threads.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self._process = subprocess.Popen(
            [str(python), "-u", str(FORKSERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._pending = b""

    def run(
        self, argv: list[str], env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (a script and its arguments) with exactly ``env``; raise
        ``subprocess.TimeoutExpired`` (the child killed) past ``timeout`` s."""
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {
                "argv": argv,
                "env": env,
                "cwd": os.getcwd(),
                "stdout": str(out),
                "stderr": str(err),
            }
            self._send(request)
            pid = int(self._receive(START_TIMEOUT_S, "the fork of a script")["pid"])
            try:
                code = int(self._receive(timeout, f"{argv} to end")["returncode"])
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._receive(30, "the killed script's exit")
                raise subprocess.TimeoutExpired(
                    argv, timeout, out.read_text(), err.read_text()
                ) from None
            return subprocess.CompletedProcess(argv, code, out.read_text(), err.read_text())

    def _send(self, request: dict[str, Any]) -> None:
        stdin: IO[bytes] | None = self._process.stdin
        assert stdin is not None
        stdin.write(json.dumps(request).encode() + b"\n")
        stdin.flush()

    def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        """The server's next answer line. Read from the pipe's descriptor, never through a
        buffered file: a buffer holding the next line too would leave ``select`` waiting
        on a pipe with nothing more to come."""
        stdout: IO[bytes] | None = self._process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(str(self.python), timeout, output=what)
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._log.seek(0)
                tail = self._log.read().decode("utf-8", "replace")[-3000:]
                raise RuntimeError(
                    f"the MLflow fork server of {self.python} ended while waiting for {what}: "
                    f"exit {self._process.wait()}; its log ends:\n{tail}"
                )
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._log.close()


_SERVERS: dict[Path, ForkServer] = {}
_GUARD = threading.Lock()


def run(
    python: Path, argv: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``python argv...`` with ``env``, through ``python``'s fork server."""
    with _GUARD:
        server = _SERVERS.get(python)
        if server is None:
            server = _SERVERS[python] = ForkServer(python)
    return server.run(argv, env, timeout)


@atexit.register
def _close_all() -> None:
    for server in _SERVERS.values():
        server.close()
