"""``RayExecutor``: each attempt as a Ray task on a cluster.

The task runs the local executor on the node Ray picked: the same child process
(``pipelines._child``) with the same task file, so a step runs the same code on Ray as on
one machine. The task streams the step's log back as it grows, then its outcome. Leases,
heartbeats and fencing stay the worker's: Ray retries nothing (``max_retries=0``), so a task
lost with its node fails the attempt, naming the node, and the step's retry policy decides.
``ray`` is imported only when this executor is configured (``pip install 'loopml[ray]'``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from loopml._version import __version__
from loopml.cluster.ray import import_ray, init_ray, refuse_local_storage
from loopml.core.errors import ConfigurationError, ServiceUnavailableError
from loopml.core.executors import LocalExecutorConfig, RayExecutorConfig
from loopml.core.pipelines import StepError
from loopml.core.step_resources import NodeShape
from loopml.pipelines.backends.local import LocalExecutor, attempt_folder
from loopml.pipelines.base import StepExecutor, StepHandle, StepOutcome, StepTask, capped_log
from loopml.settings import Settings

__all__ = [
    "RayExecutor",
    "run_attempt",
]

LOG_INTERVAL_S = 0.5
"""How often the task sends what the step printed since."""
_CHUNK_BYTES = 1 << 20
_STOP_SLACK_S = 5.0
_PURPOSE = 'the Ray executor (worker.executor type "ray")'


# ------------------------------------------------------------------ on the node


def this_node() -> dict[str, Any]:
    """The node and process a task runs in (outside a Ray task: this process's host)."""
    import ray

    inside = ray.is_initialized()
    return {
        "node_id": ray.get_runtime_context().get_node_id() if inside else "(not in Ray)",
        "host": socket.gethostname(),
        "ip": ray.util.get_node_ip_address() if inside else "",
        "pid": os.getpid(),
    }


def describe_node(node: dict[str, Any] | None) -> str:
    """``Ray node ID (host H, IP)``, or what is known of it."""
    if not node:
        return "a Ray node"
    where = ", ".join(p for p in (f"host {node.get('host')}", node.get("ip")) if p)
    return f"Ray node {node.get('node_id')} ({where})"


def version_mismatch(expected: str, node: dict[str, Any]) -> StepOutcome | None:
    """A failed outcome when this node's loopml is not the worker's ``expected`` one."""
    if expected == __version__:
        return None
    return StepOutcome(
        ok=False,
        error=StepError(
            type="StepEnvironmentMismatch",
            message=f"{describe_node(node)} runs loopml {__version__}, but the worker that "
            f"claimed the step runs loopml {expected}: install loopml {expected} on every "
            "node of the cluster",
            retryable=False,
        ),
    )


def run_attempt(
    task_json: str, expected_version: str, python: str | None, stop_grace_s: float
) -> Iterator[tuple[str, Any]]:
    """The Ray task: ``("node", info)``, then ``("log", bytes)`` as the step prints, then
    ``("outcome", json)``. A cancel (KeyboardInterrupt here) stops the step's process."""
    node = this_node()
    yield ("node", node)
    mismatch = version_mismatch(expected_version, node)
    if mismatch is not None:
        yield ("outcome", mismatch.to_json())
        return
    executor = LocalExecutor(LocalExecutorConfig(python=python, stop_grace_s=stop_grace_s))
    handle = executor.start(StepTask.from_json(task_json))
    try:
        outcome = None
        with handle.log_path.open("rb") as log:
            while outcome is None:
                outcome = handle.wait(LOG_INTERVAL_S)
                while chunk := log.read(_CHUNK_BYTES):
                    yield ("log", chunk)
        yield ("outcome", outcome.to_json())
    finally:
        handle.close()


# ------------------------------------------------------------------ in the worker


def task_options(resources: dict[str, Any]) -> dict[str, Any]:
    """The Ray task options a step's ``resources`` set, over the worker-wide ``num_cpus``."""
    names = {"cpus": "num_cpus", "gpus": "num_gpus", "memory": "memory"}
    return {names[key]: value for key, value in resources.items() if key in names}


_RAY_NODE = re.compile(r"node ID: ([0-9a-f]+)")
_RAY_IP = re.compile(r"Node IP: ([0-9A-Fa-f.:]+)")


class RayHandle(StepHandle):
    """A step's Ray task, followed by a thread that writes its log to a local file."""

    def __init__(self, ray: Any, stream: Any, task: StepTask, grace_s: float) -> None:
        self._ray = ray
        self._stream = stream
        self._step = task.step
        self._grace_s = grace_s
        self._folder = attempt_folder()
        self._log = self._folder / "step.log"
        self._log.touch()
        self._node: dict[str, Any] | None = None
        self._outcome: StepOutcome | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"ray-{task.step}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            with self._log.open("ab") as log:
                for ref in self._stream:
                    kind, value = self._ray.get(ref)
                    if kind == "log":
                        log.write(value)
                    elif kind == "node":
                        self._node = value
                        log.write(
                            f"[loopml] step {self._step!r} runs on {describe_node(value)}, "
                            f"Ray worker process {value.get('pid')}\n".encode()
                        )
                    else:
                        self._outcome = StepOutcome.from_json(value)
                    log.flush()
        except Exception as exc:
            self._outcome = StepOutcome(ok=False, error=self._failure(exc))
        finally:
            if self._outcome is None:
                self._outcome = StepOutcome(
                    ok=False,
                    error=StepError(
                        type="StepProcessDied",
                        message=f"the step's Ray task on {describe_node(self._node)} ended "
                        "without an outcome",
                        retryable=True,
                    ),
                )
            self._done.set()

    def _failure(self, exc: Exception) -> StepError:
        errors = self._ray.exceptions
        text = str(exc)
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        node = self._node
        if node is None and (found := _RAY_NODE.search(text)):
            ip = _RAY_IP.search(text)
            node = {"node_id": found.group(1), "ip": ip.group(1) if ip else ""}
        where = describe_node(node)
        if isinstance(exc, errors.TaskCancelledError):
            return StepError(
                type="StepStopped",
                message=f"the step's Ray task on {where} was cancelled",
                retryable=True,
            )
        if isinstance(exc, errors.NodeDiedError):
            return StepError(
                type="StepNodeDied",
                message=f"{where}, which ran step {self._step!r}, died or became unreachable "
                f"before the step ended (Ray: {first})",
                retryable=True,
            )
        if isinstance(exc, errors.WorkerCrashedError):
            return StepError(
                type="StepProcessDied",
                message=f"the Ray worker process running step {self._step!r} on {where} "
                f"died (Ray: {first})",
                retryable=True,
            )
        return StepError(
            type=type(exc).__name__,
            message=f"the step's Ray task on {where} failed: {text[:3000]}",
            retryable=True,
        )

    def wait(self, timeout_s: float) -> StepOutcome | None:
        return self._outcome if self._done.wait(max(0.0, timeout_s)) else None

    def stop(self) -> None:
        if self._done.is_set():
            return
        # A KeyboardInterrupt in the task: it stops the step's process (SIGTERM, SIGKILL).
        self._ray.cancel(self._stream)
        if self._done.wait(self._grace_s + _STOP_SLACK_S):
            return
        # Kills the Ray worker process; the step's process sees its parent gone and exits.
        with contextlib.suppress(Exception):
            self._ray.cancel(self._stream, force=True)
        self._done.wait(_STOP_SLACK_S)

    def read_log(self, max_bytes: int | None = None) -> bytes:
        return capped_log(self._log, max_bytes)

    def close(self) -> None:
        self.stop()
        self._thread.join(_STOP_SLACK_S)
        shutil.rmtree(self._folder, ignore_errors=True)


class RayExecutor(StepExecutor):
    """Runs each attempt as a Ray task on the cluster at ``config.address``.

    Raises:
        ConfigurationError: Ray is not installed, or the cluster is on other machines and
            the artifact store or the database is local to this one.
        ServiceUnavailableError: the cluster cannot be reached.
    """

    name: ClassVar[str] = "ray"

    def __init__(self, config: RayExecutorConfig, settings: Settings) -> None:
        self.config = config
        refuse_local_storage(config.address, settings)
        self._ray = import_ray(_PURPOSE)
        self._owns = False
        if not self._ray.is_initialized():
            self._connect()
        try:
            # The address ray.init resolved (RAY_ADDRESS, a cluster found here) too.
            refuse_local_storage(self._ray.get_runtime_context().gcs_address, settings)
        except ConfigurationError:
            self.close()
            raise
        self._remote = self._ray.remote(
            num_cpus=config.num_cpus, resources=config.resources or None, max_retries=0
        )(run_attempt)

    def _connect(self) -> None:
        try:
            init_ray(self._ray, self.config.address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ServiceUnavailableError(
                f"cannot reach the Ray cluster at {self.config.address or '(local)'}: {exc}"
            ) from exc
        self._owns = True

    def nodes(self) -> list[NodeShape]:
        shapes = []
        for node in self._ray.nodes():
            if not node.get("Alive"):
                continue
            # Ray's `memory` is what its tasks may reserve on the node, the figure that counts.
            found = node.get("Resources") or {}
            shapes.append(
                NodeShape(
                    cpus=float(found.get("CPU", 0)),
                    memory=int(found.get("memory", 0)),
                    gpus=int(found.get("GPU", 0)),
                )
            )
        return shapes

    def start(self, task: StepTask) -> RayHandle:
        stream = self._remote.options(**task_options(task.resources)).remote(
            task.to_json(), __version__, self.config.python, self.config.stop_grace_s
        )
        return RayHandle(self._ray, stream, task, self.config.stop_grace_s)

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
            self._owns = False
