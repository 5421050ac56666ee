"""Pipeline policy: the rules that move a run's steps and the run itself, as pure functions.

The store claims, fences and commits (``loopml.store.pipeline_queue``,
``loopml.store.pipeline_settle``); what a transition *is* is decided here, from plain values,
so each rule is a function a test calls without a database. Each rule is named for the
moment it decides:

- ``first_status``: the status a step is created with.
- ``after_failure``: a failed (or lost) attempt is retried after its backoff, fails, or is
  cancelled with its run.
- ``after_release``: a step a worker gave back is queued again, or cancelled with its run.
- ``retry_delay_s``: the backoff before a retry (the one rule; ``pipelines.spec`` uses it too).
- ``unblock``: which waiting steps may now run, and which are skipped (behind a failure, or
  by a false ``if``).
- ``run_finished`` and ``final_status``: whether a run has ended, and how.
- ``source_value``: the value an ``if`` or a run output names (an input or a step's output).

No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopml.core.pipelines import RunStatus, StepStatus

DEFAULT_BACKOFF_S = 10.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_MAX_BACKOFF_S = 600.0
MAX_RUN_ERROR = 4000
BLOCKING = frozenset({StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED})
"""Statuses of a needed step that mean its dependents will never run."""


# ---------------------------------------------------------------------------- retries


def retry_delay_s(
    failures: int,
    *,
    backoff: float = DEFAULT_BACKOFF_S,
    factor: float = DEFAULT_BACKOFF_FACTOR,
    max_backoff: float = DEFAULT_MAX_BACKOFF_S,
) -> float:
    """The wait before the retry that follows failure number ``failures`` (1-based).

    The n-th retry waits ``backoff * factor ** (n - 1)`` seconds, at most ``max_backoff``.

    Example:
        >>> retry_delay_s(3, backoff=10, factor=2, max_backoff=600)
        40.0
    """
    return float(min(max_backoff, backoff * factor ** max(0, failures - 1)))


def stored_retry_delay_s(retry: Mapping[str, Any], failures: int) -> float:
    """``retry_delay_s`` for a step's stored retry settings (a ``RetrySpec`` as JSON; a key
    left out takes its default)."""
    return retry_delay_s(
        failures,
        backoff=float(retry.get("backoff", DEFAULT_BACKOFF_S)),
        factor=float(retry.get("factor", DEFAULT_BACKOFF_FACTOR)),
        max_backoff=float(retry.get("max_backoff", DEFAULT_MAX_BACKOFF_S)),
    )


# ---------------------------------------------------------------------------- one step


def first_status(needs: Sequence[str], conditional: bool) -> StepStatus:
    """A new run's step is QUEUED at once when it needs nothing and has no condition; it is
    PENDING otherwise (``unblock`` reads its condition, even for a root step)."""
    return StepStatus.PENDING if needs or conditional else StepStatus.QUEUED


@dataclass(frozen=True)
class FailureVerdict:
    """What a failed attempt leads to.

    Attributes:
        status: QUEUED (retry), FAILED, or CANCELLED (its run is being cancelled).
        delay_s: seconds before the retry may be claimed (QUEUED only).
        event: the step event to emit (``retrying``, ``failed``), or ``None``.
    """

    status: StepStatus
    delay_s: float | None = None
    event: str | None = None


def after_failure(
    *,
    run_status: RunStatus,
    retryable: bool,
    failures: int,
    max_retries: int,
    retry: Mapping[str, Any],
) -> FailureVerdict:
    """Retry, fail or cancel a step whose attempt failed.

    Args:
        run_status: the run's status (a CANCELLING run retries nothing).
        retryable: whether the error may pass on a retry.
        failures: the step's failures, this one included.
        max_retries: how many retries the step allows.
        retry: the step's stored retry settings (backoff, factor, max_backoff).
    """
    if run_status == RunStatus.CANCELLING:
        return FailureVerdict(StepStatus.CANCELLED)
    if retryable and failures <= max_retries:
        return FailureVerdict(
            StepStatus.QUEUED, stored_retry_delay_s(retry, failures), event="retrying"
        )
    return FailureVerdict(StepStatus.FAILED, event="failed")


def after_release(run_status: RunStatus) -> StepStatus:
    """A step given back unfinished is QUEUED again at once (the attempt does not count),
    or CANCELLED when its run is being cancelled."""
    return StepStatus.CANCELLED if run_status == RunStatus.CANCELLING else StepStatus.QUEUED


def lease_lost_error(owner: str | None, expired_at: datetime | None) -> dict[str, Any]:
    """The error recorded for an attempt whose worker stopped renewing its lease: retryable,
    and the platform's fault rather than the step's."""
    when = expired_at.isoformat(timespec="seconds") if expired_at else "?"
    return {
        "type": "LeaseExpired",
        "code": None,
        "message": f"worker {owner or '?'} stopped renewing its lease (expired {when}): it "
        "crashed, was killed, or lost the database",
        "retryable": True,
        "origin": "platform",
        "traceback": None,
    }


# ---------------------------------------------------------------------------- the DAG


@dataclass(frozen=True)
class StepState:
    """A step of a run as the DAG rules see it.

    Attributes:
        needs: the steps it waits for (names not in the run are ignored).
        outputs: what it produced, once done.
        position: its place in the spec's order (the first failed step names a run's error).
        error: its last error (``message`` is read).
    """

    name: str
    status: StepStatus
    needs: tuple[str, ...] = ()
    outputs: Mapping[str, Any] | None = None
    position: int = 0
    error: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Unblocked:
    """A waiting step's new status; ``skipped_by`` records a false condition
    (``{"if": text, "value": value}``: the step's inputs then say why it was skipped)."""

    status: StepStatus
    skipped_by: dict[str, Any] | None = None


def source_value(
    source: Mapping[str, str],
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
) -> Any:
    """The value ``source`` names: ``{"input": name}`` or ``{"step": s, "output": o}``
    (``None`` when the step, or its output, is missing)."""
    if "input" in source:
        return inputs.get(source["input"])
    name = source.get("step", "")
    if name not in outputs:
        return None
    return (outputs[name] or {}).get(source.get("output", ""))


def _decide(
    step: StepState,
    status: Mapping[str, StepStatus],
    condition: Mapping[str, str] | None,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Mapping[str, Any] | None],
) -> Unblocked | None:
    needs = [status[n] for n in step.needs if n in status]
    if any(s in BLOCKING for s in needs):
        return Unblocked(StepStatus.SKIPPED)
    if not all(s.done for s in needs):
        return None
    if condition is None:
        return Unblocked(StepStatus.QUEUED)
    value = source_value(condition, inputs, outputs)
    if value is True:
        return Unblocked(StepStatus.QUEUED)
    # A false condition is an outcome: SKIPPED, and the inputs say why.
    return Unblocked(StepStatus.SKIPPED, {"if": condition.get("text", ""), "value": value})


def unblock(
    steps: Sequence[StepState],
    *,
    conditions: Mapping[str, Mapping[str, str]],
    inputs: Mapping[str, Any],
) -> dict[str, Unblocked]:
    """The PENDING steps that change, by name, until nothing more does.

    A step behind a FAILED, CANCELLED or SKIPPED step is SKIPPED (and so, in turn, are its
    dependents); a step whose needed steps are all done is QUEUED, unless its condition
    (``if``) is not exactly ``true``, which SKIPS it.
    """
    status = {s.name: s.status for s in steps}
    outputs = {s.name: s.outputs for s in steps}
    changes: dict[str, Unblocked] = {}
    changed = True
    while changed:
        changed = False
        for step in steps:
            if status[step.name] != StepStatus.PENDING:
                continue
            found = _decide(step, status, conditions.get(step.name), inputs, outputs)
            if found is not None:
                status[step.name] = found.status
                changes[step.name] = found
                changed = True
    return changes


def run_finished(steps: Iterable[StepState]) -> bool:
    """Whether every step of a run has ended (the run ends with the last of them)."""
    return all(s.status.finished for s in steps)


def final_status(run_status: RunStatus, steps: Sequence[StepState]) -> tuple[RunStatus, str | None]:
    """How a run whose steps all ended finishes, and its error message.

    A run being cancelled is CANCELLED; a failed step (the first in spec order names the
    error) makes it FAILED; a cancelled step makes it CANCELLED; otherwise it SUCCEEDED.
    """
    failed = [s for s in steps if s.status == StepStatus.FAILED]
    if run_status == RunStatus.CANCELLING:
        return RunStatus.CANCELLED, "cancelled"
    if failed:
        first = min(failed, key=lambda s: s.position)
        message = (first.error or {}).get("message", "failed")
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return RunStatus.FAILED, f"step {first.name!r} failed{more}: {message}"[:MAX_RUN_ERROR]
    if any(s.status == StepStatus.CANCELLED for s in steps):
        return RunStatus.CANCELLED, "cancelled"
    return RunStatus.SUCCEEDED, None


def run_outputs(
    wanted: Mapping[str, Mapping[str, str]],
    inputs: Mapping[str, Any],
    steps: Sequence[StepState],
) -> dict[str, Any]:
    """A succeeded run's outputs: each named source's value (see ``source_value``)."""
    outputs = {s.name: s.outputs for s in steps}
    return {name: source_value(source, inputs, outputs) for name, source in wanted.items()}
