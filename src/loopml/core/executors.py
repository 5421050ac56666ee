"""Where a pipeline worker runs the steps it claims: the executor settings (the
``worker.executor`` section). The executors themselves live in
``loopml.pipelines.backends``; their settings are here so that the settings tree, which
imports only ``core``, can hold them. No I/O here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loopml.core.errors import ValidationError

Place = Literal["local", "ray"]
"""Where a piece of work runs: this process or machine (``local``), or the Ray cluster."""


def check_place(on: str, *, option: str = "on") -> Place:
    """``on`` when it is a place (``local`` or ``ray``): for the CLI's ``--on``, a step's
    ``on:`` and ``loopml train --on``, which all say the same when it is not.

    Raises:
        ValidationError: naming both places and what was given.
    """
    if on == "local":
        return "local"
    if on == "ray":
        return "ray"
    raise ValidationError(f"{option} is local or ray, got {on!r}", details={"field": "on"})


class LocalExecutorConfig(BaseModel):
    """The local executor: worker child processes on this machine."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local"] = "local"
    python: str | None = Field(
        default=None, description="Interpreter for step processes (default: the worker's)."
    )
    cpus: float | None = Field(
        default=None,
        gt=0,
        le=1024,
        description="CPUs this machine gives the worker's steps (default: the larger of its "
        "CPU count and `worker.concurrency`): "
        "running steps' `resources.cpus` (1 each when not asked) never add up to more; a step "
        "that does not fit in what is free waits in the queue.",
    )
    stop_grace_s: float = Field(
        default=3.0, ge=0, le=300, description="SIGTERM, then SIGKILL after this many seconds."
    )
    fork_server: bool = Field(
        default=True,
        description="Fork each step's process from a process that has imported loopml "
        "already (about 0.5 s less a step; the step still runs in a process and session of "
        "its own). Off: a fresh interpreter per step.",
    )


class RayExecutorConfig(BaseModel):
    """The Ray executor: each attempt a Ray task on a cluster, which runs the step's process
    on the node Ray chose."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["ray"]
    address: str | None = Field(
        default=None,
        max_length=500,
        description="The cluster's head as `ray start --head` printed it (`10.0.0.5:6379`; "
        "not a Ray Client `ray://` address), or `auto` for the cluster started on this "
        "machine. Unset: what `ray.init()` finds (`RAY_ADDRESS`, a cluster started on this "
        "machine), else a Ray instance of the worker's own.",
    )
    python: str | None = Field(
        default=None,
        description="Interpreter for step processes on the nodes (default: the Ray worker's).",
    )
    num_cpus: float = Field(
        default=1.0, ge=0, le=1024, description="CPUs each step's Ray task reserves."
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        max_length=16,
        description="Custom Ray resources each step's task reserves (`{gpu_pool = 1}`): its "
        "steps run only on nodes started with them (`ray start --resources`).",
    )
    stop_grace_s: float = Field(
        default=3.0,
        ge=0,
        le=300,
        description="A stopped step's process gets SIGTERM, then SIGKILL after this many "
        "seconds; a task still running after that is killed with its Ray worker process.",
    )

    @field_validator("resources")
    @classmethod
    def _resource_amounts(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if not name or not 0 <= amount <= 1_000_000:
                raise ValueError(f"resource {name!r}: a name and an amount from 0 to 1000000")
        return value

    @field_validator("address")
    @classmethod
    def _driver_address(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(
                f"{value!r} is a Ray Client address: the worker joins the cluster as a driver, "
                "at the address `ray start --head` printed (host:port)"
            )
        return value


ExecutorConfig = Annotated[LocalExecutorConfig | RayExecutorConfig, Field(discriminator="type")]
"""An executor's settings, told apart by ``type``."""
