"""What a pipeline step asks of the machine it runs on (``resources: {cpus, memory, gpus}``)
and what a worker's executor can give (its nodes), with the one rule between them: a step
fits when one node has all it asks for, since one attempt runs on one node. No I/O here.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_CPUS = 1.0
"""What a step that asks for nothing counts for on a worker's CPUs."""
MAX_CPUS = 1024.0
MAX_GPUS = 256
MAX_MEMORY_BYTES = 1 << 50  # 1 PiB
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i?B|B)?\s*$", re.IGNORECASE)
_FACTORS = {
    "B": 1,
    **{f"{p}B": 1000 ** (i + 1) for i, p in enumerate("KMGTP")},
    **{f"{p}IB": 1024 ** (i + 1) for i, p in enumerate("KMGTP")},
}
_SIZE_HINT = "bytes as a whole number, or text such as '512MiB', '4GiB' or '2GB'"


def parse_bytes(value: Any) -> int:
    """Bytes from ``4294967296``, ``"4GiB"``, ``"512MiB"``, ``"2GB"`` (1000s) or ``"100B"``.

    Raises:
        ValueError: not a size, or not more than 0.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected {_SIZE_HINT}, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and value.is_integer():
        size = int(value)
    elif isinstance(value, str) and (found := _SIZE.fullmatch(value)):
        unit = (found.group(2) or "B").upper()
        size = math.ceil(float(found.group(1)) * _FACTORS[unit])
    else:
        raise ValueError(f"expected {_SIZE_HINT}, got {value!r}")
    if not 0 < size <= MAX_MEMORY_BYTES:
        raise ValueError(f"memory is more than 0 and at most 1PiB, got {value!r}")
    return size


def format_bytes(size: float) -> str:
    """``62.7 GiB``, ``512 MiB``: binary units, one decimal past the unit when not whole."""
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.0f} {unit}" if amount.is_integer() else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def _plural(count: float, noun: str) -> str:
    return f"{count:g} {noun}" + ("" if count == 1 else "s")


class StepResources(BaseModel):
    """What one attempt of a step needs on the node it runs on; what is left out is not
    asked for (CPUs count as one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(
        default=None,
        gt=0,
        le=MAX_CPUS,
        description="CPUs (fractions allowed): the Ray task reserves them; the local "
        "executor counts them against the worker's CPUs.",
    )
    memory: int | None = Field(
        default=None, description="Bytes, or text: '512MiB', '4GiB', '2GB'. Ray reserves it."
    )
    gpus: int | None = Field(default=None, ge=0, le=MAX_GPUS, description="Whole GPUs.")

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return None if value is None else parse_bytes(value)

    @property
    def weight(self) -> float:
        """The CPUs the step counts for on a worker that weighs them."""
        return DEFAULT_CPUS if self.cpus is None else self.cpus

    def describe(self) -> str:
        """``4 CPUs, 16 GiB, 1 GPU``: what was asked, in the order it was asked."""
        parts = []
        if self.cpus is not None:
            parts.append(_plural(self.cpus, "CPU"))
        if self.memory is not None:
            parts.append(format_bytes(self.memory))
        if self.gpus is not None:
            parts.append(_plural(self.gpus, "GPU"))
        return ", ".join(parts) or "nothing"


class NodeShape(BaseModel):
    """What one node of a worker's executor offers a step: the machine itself for the local
    executor, each alive node of the Ray cluster for the Ray one."""

    model_config = ConfigDict(frozen=True)

    cpus: float = Field(ge=0)
    memory: int = Field(ge=0, description="Bytes.")
    gpus: int = Field(default=0, ge=0)

    def fits(self, asked: StepResources) -> bool:
        """Whether an attempt asking ``asked`` could ever run on this node."""
        return (
            (asked.cpus is None or asked.cpus <= self.cpus)
            and (asked.memory is None or asked.memory <= self.memory)
            and (asked.gpus is None or asked.gpus <= self.gpus)
        )

    def describe(self) -> str:
        return (
            f"{_plural(self.cpus, 'CPU')}, {format_bytes(self.memory)}, {_plural(self.gpus, 'GPU')}"
        )


def largest(nodes: list[NodeShape]) -> NodeShape | None:
    """The node to name when nothing fits: most GPUs, then CPUs, then memory."""
    return max(nodes, key=lambda n: (n.gpus, n.cpus, n.memory), default=None)
