"""Executors: where a claimed step's code runs. The worker owns the queue (claims, leases,
heartbeats, results); an executor only runs one attempt and reports how it ended.

``local`` runs each attempt in a child process of the worker (``backends/local.py``), ``ray``
as a Ray task on a cluster (``backends/ray.py``), behind the same two small interfaces.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from loopml.core.pipelines import StepError
from loopml.core.step_resources import NodeShape


@dataclass(frozen=True)
class StepTask:
    """One attempt to run, as plain JSON-ready data.

    Attributes:
        uses: the built-in's name, or ``python``.
        python: ``module:function`` of a python step.
        params: the ``with`` values, references resolved.
        outputs: the output names and types the step must return.
        settings: the worker's settings as plain data (secrets included: the task file is
            private to the worker's user).
        sys_path: import path entries the step's module may need.
        api_url: the platform's API, for steps that act through it (``deploy``): a step
            process is not the server that owns the deployments.
        resources: what the step asked for (``StepResources`` as data, unset parts left
            out); the Ray executor reserves it for the task.
    """

    project: str
    project_id: str
    pipeline: str
    run_id: str
    step: str
    step_run_id: str
    attempt: int
    uses: str
    python: str | None
    params: dict[str, Any]
    outputs: dict[str, str]
    settings: dict[str, Any]
    sys_path: list[str] = field(default_factory=list)
    api_url: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The task as JSON text."""
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> StepTask:
        """The task from ``to_json``'s text."""
        return cls(**json.loads(text))


@dataclass(frozen=True)
class StepOutcome:
    """How an attempt ended: its outputs, or the error that ended it."""

    ok: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    error: StepError | None = None

    def to_json(self) -> str:
        """The outcome as JSON text."""
        error = None if self.error is None else self.error.model_dump(mode="json")
        return json.dumps({"ok": self.ok, "outputs": self.outputs, "error": error})

    @classmethod
    def from_json(cls, text: str) -> StepOutcome:
        """The outcome from ``to_json``'s text."""
        data = json.loads(text)
        error = None if data.get("error") is None else StepError.model_validate(data["error"])
        return cls(ok=bool(data["ok"]), outputs=dict(data.get("outputs") or {}), error=error)


class StepHandle(ABC):
    """One running attempt."""

    @abstractmethod
    def wait(self, timeout_s: float) -> StepOutcome | None:
        """Wait up to ``timeout_s`` for the attempt to end; its outcome, or ``None``."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the attempt now (cancelled, timed out, or its lease was lost)."""

    @abstractmethod
    def read_log(self, max_bytes: int | None = None) -> bytes:
        """What the attempt printed and logged so far; past ``max_bytes``, its start and its
        newest end with a line saying how much was left out between them (``capped_log``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Free what the attempt left behind (after its log was read)."""


class StepExecutor(ABC):
    """Starts attempts. Implementations: ``LocalExecutor``, ``RayExecutor``."""

    name: ClassVar[str]

    weighs_cpus: ClassVar[bool] = False
    """Whether the worker must count steps' CPUs against ``nodes()`` before claiming
    (a local machine), rather than leave the placing to the executor (Ray schedules)."""

    @abstractmethod
    def start(self, task: StepTask) -> StepHandle:
        """Start running ``task``; return at once."""

    def nodes(self) -> list[NodeShape]:
        """What each node this executor runs steps on offers a step, as of now (reported
        to the store, and checked against at ``pipelines apply``); empty when unknown."""
        return []

    @property
    def cpus_given(self) -> float | None:
        """The CPUs its settings give steps on this machine (``worker.executor.cpus``), or
        ``None`` when not set or not counted here."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release what the executor holds."""


HEAD_SHARE = 4
"""A capped log keeps a quarter of its budget from the start (how the step began, the
first error), the rest from the newest end."""


def capped_log(path: Path, max_bytes: int | None) -> bytes:
    """The file at ``path`` (empty when missing), or past ``max_bytes`` its first and newest
    bytes, cut at line ends, around a line saying how many bytes were left out; never more
    than ``max_bytes``. Reads only what it keeps."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if max_bytes is None or size <= max_bytes:
                return handle.read()
            marker_room = 200
            head = handle.read(max(0, (max_bytes - marker_room) // HEAD_SHARE))
            tail_room = max(0, max_bytes - marker_room - len(head))
            handle.seek(max(len(head), size - tail_room))
            tail = handle.read(tail_room)
    except FileNotFoundError:
        return b""
    if b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]
    if b"\n" in tail[:-1]:
        tail = tail[tail.index(b"\n") + 1 :]
    dropped = size - len(head) - len(tail)
    marker = (
        f"[loopml] ... {dropped:,} bytes of this step's output left out: its log keeps its "
        f"start and its newest end, {max_bytes:,} bytes (worker.step_log_max_bytes) ...\n"
    ).encode()
    if head and not head.endswith(b"\n"):
        marker = b"\n" + marker
    return head + marker + tail
