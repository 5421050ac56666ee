"""Where an AutoML training call's budget went, recorded on its run.

``train`` (and the text trainer's embeddings method) measure each phase of the call;
``BudgetSpend.batch`` writes them as the run's metrics ``budget.<phase>_s``, with
``budget.unused_s`` (what was left when the call ended), ``budget.budget_s``,
``budget.wall_s`` and ``budget.used`` (wall time over budget), and why the search
stopped (``budget``, or ``max_iter`` and ``search space exhausted`` when it ended early)
as the tag
``loopml.budget.stopped``: ``loopml runs show RUN_ID`` lists them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from loopml.core.clock import utcnow
from loopml.core.runs import LogBatch, MetricPoint

# The phases of a call, in order. ``read``: the dataset's split and the run's start;
# ``prepare``: AutoML's checks and preprocessing; ``search``: the library defaults and
# FLAML's trials; ``ensemble``: deciding the final blend; ``final_fit``: the winner's
# refit; ``package``: ONNX export, parity check, skops, upload; ``register``: the
# registration and the registry's scoring on the frozen eval set; ``other``: the rest
# (recording the trials' summary, ending the run).
PHASES = ("read", "prepare", "search", "ensemble", "final_fit", "package", "register", "other")
STOPPED_TAG = "loopml.budget.stopped"


@dataclass
class BudgetSpend:
    """The phases of one call against its budget, measured with ``time.monotonic()``.

    ``mark(phase)`` closes ``phase`` at now (it took the time since the previous mark);
    ``add`` records phases measured elsewhere (AutoML's own timings) and moves the
    previous mark past them, so the phases always sum to the wall time so far.
    """

    budget_s: float
    started: float
    stopped: str = "budget"
    phases: dict[str, float] = field(default_factory=dict)
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._last = self.started

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now

    def add(self, timings: dict[str, float], *, rest: str) -> None:
        """Record ``timings`` (seconds per phase, measured inside the interval since the
        last mark); what they leave of that interval goes to ``rest``."""
        now = time.monotonic()
        for phase, seconds in timings.items():
            self.phases[phase] = self.phases.get(phase, 0.0) + seconds
        leftover = max(0.0, now - self._last - sum(timings.values()))
        self.phases[rest] = self.phases.get(rest, 0.0) + leftover
        self._last = now

    @property
    def wall_s(self) -> float:
        return self._last - self.started

    @property
    def unused_s(self) -> float:
        return max(0.0, self.budget_s - self.wall_s)

    def summary(self) -> dict[str, float | str]:
        """The phases (rounded, in ``PHASES`` order), the unused time, the budget, the wall
        time, the share of the budget used and why the search stopped."""
        out: dict[str, float | str] = {
            p: round(self.phases[p], 3) for p in PHASES if p in self.phases
        }
        out["unused"] = round(self.unused_s, 3)
        out["budget"] = round(self.budget_s, 3)
        out["wall"] = round(self.wall_s, 3)
        out["used"] = round(self.wall_s / self.budget_s, 3)
        out["stopped"] = self.stopped
        return out

    def batch(self) -> LogBatch:
        """The run's record of the spend: metrics ``budget.<phase>_s``, ``budget.unused_s``,
        ``budget.budget_s``, ``budget.wall_s``, ``budget.used``, and the tag
        ``loopml.budget.stopped``."""
        now_ms = int(utcnow().timestamp() * 1000)
        values = {f"budget.{p}_s": s for p, s in self.phases.items()} | {
            "budget.unused_s": self.unused_s,
            "budget.budget_s": self.budget_s,
            "budget.wall_s": self.wall_s,
            "budget.used": self.wall_s / self.budget_s,
        }
        return LogBatch(
            metrics=[MetricPoint(key=k, value=v, timestamp_ms=now_ms) for k, v in values.items()],
            tags={STOPPED_TAG: self.stopped},
        )
