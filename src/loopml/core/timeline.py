"""The start-up timeline of ``loopml up``: each step with the seconds since the command began,
the process's CPU seconds, and the top-level packages imported since the step before, which
``loopml up --verbose`` prints as they come (docs/serving.md, "Start-up"). One per process:
start-up happens once."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One step of the start-up: ``wall_s`` since the timeline began, ``cpu_s`` of the whole
    process, and the packages first imported since the step before."""

    name: str
    wall_s: float
    cpu_s: float
    imported: tuple[str, ...]


def _packages() -> set[str]:
    return {name.partition(".")[0] for name in list(sys.modules)}


@dataclass
class Timeline:
    """The steps so far, and ``echo``, called with each step as it is marked."""

    started: float = field(default_factory=time.perf_counter)
    steps: list[Step] = field(default_factory=list)
    echo: Callable[[Step], None] | None = None
    _seen: set[str] = field(default_factory=_packages)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, name: str) -> Step:
        """Record that ``name`` is done now."""
        with self._lock:
            now = _packages()
            step = Step(
                name,
                wall_s=time.perf_counter() - self.started,
                cpu_s=time.process_time(),
                imported=tuple(sorted(now - self._seen)),
            )
            self._seen = now
            self.steps.append(step)
        if self.echo is not None:
            self.echo(step)
        return step


STARTUP = Timeline()
"""This process's start-up timeline."""


def mark(name: str) -> Step:
    """Mark a step of this process's start-up (``STARTUP``)."""
    return STARTUP.mark(name)
