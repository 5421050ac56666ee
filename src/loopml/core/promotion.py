"""Promotion rules: whether an alias may move to a model version, and what the move records.

Only a READY version carries an alias. ``champion`` (``gate.PROTECTED_ALIAS``) moves only to
a version whose newest gate verdict passed, unless it is forced with a reason that is not
blank; the override is recorded as ``model.promotion.forced``. The registry reads the inputs
and writes the outcome in the transaction that moves the alias, with the model row locked
first, so no other move of that model's aliases comes between the read and the write.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from loopml.core.errors import ConflictError, GateRequiredError, ValidationError
from loopml.core.gate import MAX_REASON, PROTECTED_ALIAS
from loopml.core.registry import VersionStatus

GateState = Literal["failed", "missing"]
"""Why a forced promotion needed forcing: its newest verdict failed, or it had none."""


@dataclass(frozen=True)
class Verdict:
    """A version's newest gate verdict, as promotion reads it.

    Attributes:
        id: the verdict's id (``GateResult.id``).
        passed: whether every rule passed.
        rules: its rule outcomes as stored (``RuleOutcome`` as JSON).
    """

    id: str
    passed: bool
    rules: Sequence[Mapping[str, object]] = ()


@dataclass(frozen=True)
class ForcedPromotion:
    """A promotion the gate did not allow, forced with a reason: ``model.promotion.forced``."""

    gate: GateState
    gate_result_id: str | None
    reason: str


@dataclass(frozen=True)
class AliasMove:
    """An alias move the rules allow, and what it records.

    Attributes:
        gate_result_id: the passed verdict that let ``champion`` move.
        forced: the override, when the gate was forced.
    """

    alias: str
    version: int
    gate_result_id: str | None = None
    forced: ForcedPromotion | None = None

    def event_fields(self) -> dict[str, object]:
        """What the move adds to its ``model.alias.set`` event."""
        if self.forced is not None:
            return {"forced": True, "reason": self.forced.reason}
        if self.gate_result_id is not None:
            return {"gate_result_id": self.gate_result_id}
        return {}


def checked_reason(force: bool, reason: str | None) -> str | None:
    """``reason``, checked when ``force`` asks to override the gate (as given otherwise).

    Raises:
        ValidationError: ``force`` with no reason, a blank one or one over ``MAX_REASON``.
    """
    if not force:
        return reason
    text = reason or ""
    if not isinstance(text, str) or not text or len(text) > MAX_REASON:
        raise ValidationError(
            f"invalid reason {repr(text)[:80]}: expected a non-empty string of at most "
            f"{MAX_REASON} characters",
            details={"field": "reason", "max_length": MAX_REASON},
        )
    if not text.strip(" \t\r\n"):
        raise ValidationError("a forced promotion needs a reason that is not blank")
    return text


def decide_alias_move(
    *,
    model: str,
    alias: str,
    version: int,
    status: str,
    status_message: str,
    verdict: Verdict | None,
    force: bool = False,
    reason: str | None = None,
) -> AliasMove:
    """Whether ``alias`` may move to ``version`` of ``model``, and what the move records.

    Args:
        status: the version's ``VersionStatus``; ``status_message`` says why it is not READY.
        verdict: the version's newest gate verdict, ``None`` when the gate never judged it
            (only ``champion`` reads it).

    Raises:
        ValidationError: ``force`` without a reason that is not blank.
        ConflictError: the version is not READY (only verified versions carry aliases).
        GateRequiredError: ``champion`` to a version whose newest verdict failed or that has
            none, without ``force``.
    """
    reason = checked_reason(force, reason)
    if status != VersionStatus.READY:
        raise ConflictError(
            f"version {version} of model {model!r} is {status}: only READY versions "
            f"can carry an alias ({status_message or 'registration not verified'})",
            details={"model": model, "version": version, "status": str(status)},
        )
    if alias != PROTECTED_ALIAS:
        return AliasMove(alias, version)
    if verdict is not None and verdict.passed:
        return AliasMove(alias, version, gate_result_id=verdict.id)
    if not force or reason is None:
        raise _gate_required(model, alias, version, verdict)
    forced = ForcedPromotion(
        gate="failed" if verdict is not None else "missing",
        gate_result_id=verdict.id if verdict is not None else None,
        reason=reason,
    )
    return AliasMove(alias, version, forced=forced)


def _gate_required(
    model: str, alias: str, version: int, verdict: Verdict | None
) -> GateRequiredError:
    why = (
        f"its latest gate verdict failed ({_failed_rules(verdict.rules)})"
        if verdict is not None
        else "the gate has not judged it"
    )
    return GateRequiredError(
        f"version {version} of model {model!r} cannot become {alias!r}: {why}. Run "
        f"`loopml models gate {model}/{version}`, or force it with a reason "
        "(`--force --reason ...`), which is audited",
        details={
            "model": model,
            "version": version,
            "gate": "failed" if verdict is not None else "missing",
        },
    )


def _failed_rules(rules: Sequence[Mapping[str, object]]) -> str:
    failed = [str(r.get("message", r.get("metric", "?"))) for r in rules if not r.get("passed")]
    return "; ".join(failed) or "no rule passed"
