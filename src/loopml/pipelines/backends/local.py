"""``LocalExecutor``: each attempt in a child process of the worker.

The child gets the task in a private file, writes its outcome to another, and its stdout
and stderr go to a log file the worker uploads. It is forked from the worker's fork server
(``pipelines._forkserver``: loopml already imported, 0.5 s less a step), or, with
``fork_server`` off or the server gone, started as a fresh interpreter. It runs in a session
of its own, so stopping it takes its own children (training threads' helpers) too, and it
exits by itself when the worker dies (see ``pipelines._child``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import ClassVar

from loopml.core.executors import LocalExecutorConfig as LocalExecutorConfig
from loopml.core.pipelines import StepError
from loopml.core.step_resources import NodeShape
from loopml.pipelines.backends import _forked
from loopml.pipelines.base import (
    StepExecutor,
    StepHandle,
    StepOutcome,
    StepTask,
    capped_log,
)
from loopml.system.processes import alive

_CHILD = "loopml.pipelines._child"
_log = logging.getLogger(__name__)
_PREFIX = "loopml-attempt-"


def _remove_orphans() -> None:
    """Remove the attempt folders of workers that died (killed before cleaning up): they
    hold task files with the settings' secrets."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = folder.name.removeprefix(_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        if not alive(int(pid)):  # another user's live worker counts as alive
            shutil.rmtree(folder, ignore_errors=True)


def this_machine(cpus: float | None = None) -> NodeShape:
    """What this machine offers a step: ``cpus`` (else its CPU count), its memory, and the
    NVIDIA GPUs its driver shows (``/dev/nvidia0``, ...)."""
    import psutil

    gpus = sum(1 for dev in Path("/dev").glob("nvidia[0-9]*") if dev.name[6:].isdigit())
    return NodeShape(
        cpus=cpus or float(os.cpu_count() or 1),
        memory=int(psutil.virtual_memory().total),
        gpus=gpus,
    )


def attempt_folder() -> Path:
    """A private folder (mode 0700) for one attempt's files; if this process dies before
    removing it, the next executor started on this machine does."""
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))


class LocalHandle(StepHandle):
    """A step's child process."""

    def __init__(
        self,
        process: subprocess.Popen[bytes] | _forked.ForkedProcess,
        folder: Path,
        grace_s: float,
    ) -> None:
        self._process = process
        self._folder = folder
        self._grace_s = grace_s
        self._log = folder / "step.log"
        self._result = folder / "result.json"

    @property
    def log_path(self) -> Path:
        """The file the step's output goes to, as it runs (the Ray executor streams it)."""
        return self._log

    def wait(self, timeout_s: float) -> StepOutcome | None:
        try:
            code = self._process.wait(timeout=max(0.0, timeout_s))
        except subprocess.TimeoutExpired:
            return None
        if self._result.is_file():
            return StepOutcome.from_json(self._result.read_text(encoding="utf-8"))
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return StepOutcome(
            ok=False,
            error=StepError(
                type="StepProcessDied",
                message=f"the step's process {how} before reporting a result (out of "
                "memory, a crash in native code, or killed); see the step's log",
                retryable=True,
            ),
        )

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            # A forked child a moment old may not lead its own session yet.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signum)

    def stop(self) -> None:
        if self._process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=self._grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._process.wait()

    def read_log(self, max_bytes: int | None = None) -> bytes:
        return capped_log(self._log, max_bytes)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._folder, ignore_errors=True)


class LocalExecutor(StepExecutor):
    """Runs each attempt as ``python -m loopml.pipelines._child`` on this machine."""

    name: ClassVar[str] = "local"
    weighs_cpus: ClassVar[bool] = True

    def __init__(self, config: LocalExecutorConfig | None = None) -> None:
        self.config = config or LocalExecutorConfig()
        _remove_orphans()
        if self.config.fork_server:
            # Started now, it has imported loopml by the time the first step comes.
            with contextlib.suppress(OSError):
                _forked.server_for(self.config.python or sys.executable)

    def nodes(self) -> list[NodeShape]:
        return [this_machine(self.config.cpus)]

    @property
    def cpus_given(self) -> float | None:
        return self.config.cpus

    def start(self, task: StepTask) -> LocalHandle:
        folder = attempt_folder()
        task_file = folder / "task.json"
        # The task holds the settings' secrets: readable by the worker's user only.
        fd = os.open(task_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(task.to_json())
        log_file, result_file = folder / "step.log", folder / "result.json"
        python = self.config.python or sys.executable
        if self.config.fork_server:
            log_file.touch(mode=0o600)
            try:
                forked = _forked.server_for(python).spawn(task_file, result_file, log_file)
            except _forked.ForkServerError as exc:
                _log.warning("starting the step in a fresh interpreter: %s", exc)
            else:
                return LocalHandle(forked, folder, self.config.stop_grace_s)
        command = [
            python,
            "-u",
            "-m",
            _CHILD,
            str(task_file),
            str(result_file),
            str(os.getpid()),
        ]
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return LocalHandle(process, folder, self.config.stop_grace_s)
