"""The promotion rules as pure functions: READY versions only, the gate on ``champion``, and
forcing it with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.core.errors import ConflictError, GateRequiredError, ValidationError
from loopml.core.gate import MAX_REASON
from loopml.core.promotion import (
    AliasMove,
    ForcedPromotion,
    Verdict,
    checked_reason,
    decide_alias_move,
)
from loopml.core.registry import VersionStatus

PASSED = Verdict(id="r1", passed=True)
FAILED = Verdict(
    id="r2",
    passed=False,
    rules=(
        {"rule": "threshold", "metric": "roc_auc", "passed": False, "message": "roc_auc low"},
        {"rule": "latency", "metric": "latency_p99_ms", "passed": True, "message": "fast"},
        {"rule": "must_beat", "metric": "f1", "passed": False},
    ),
)


def decide(**given: Any) -> AliasMove:
    args: dict[str, Any] = {
        "model": "churn",
        "alias": "champion",
        "version": 3,
        "status": VersionStatus.READY,
        "status_message": "",
        "verdict": PASSED,
        **given,
    }
    return decide_alias_move(**args)


def test_an_unguarded_alias_moves_to_any_ready_version_and_records_nothing_more() -> None:
    move = decide(alias="staging", verdict=None)

    assert move == AliasMove("staging", 3)
    assert move.event_fields() == {}


def test_a_passed_verdict_lets_champion_move_and_is_recorded() -> None:
    move = decide()

    assert move == AliasMove("champion", 3, gate_result_id="r1")
    assert move.event_fields() == {"gate_result_id": "r1"}


@pytest.mark.parametrize(
    ("status", "message", "shown"),
    [
        (
            VersionStatus.PENDING,
            "",
            "is PENDING: only READY versions can carry an alias (registration not verified)",
        ),
        (
            VersionStatus.FAILED,
            "file 'x' missing",
            "is FAILED: only READY versions can carry an alias (file 'x' missing)",
        ),
    ],
)
def test_only_ready_versions_carry_an_alias(
    status: VersionStatus, message: str, shown: str
) -> None:
    with pytest.raises(ConflictError) as caught:
        decide(alias="staging", status=status, status_message=message)

    assert type(caught.value) is ConflictError
    assert caught.value.message == f"version 3 of model 'churn' {shown}"
    assert caught.value.details == {"model": "churn", "version": 3, "status": str(status)}


def test_not_ready_is_refused_before_the_gate_is_asked() -> None:
    with pytest.raises(ConflictError, match="only READY") as caught:
        decide(status=VersionStatus.FAILED, verdict=None)

    assert not isinstance(caught.value, GateRequiredError)


def test_champion_without_a_verdict_is_refused_with_the_command_to_run() -> None:
    with pytest.raises(GateRequiredError) as caught:
        decide(verdict=None)

    assert caught.value.message == (
        "version 3 of model 'churn' cannot become 'champion': the gate has not judged it. "
        "Run `loopml models gate churn/3`, or force it with a reason (`--force --reason ...`), "
        "which is audited"
    )
    assert caught.value.details == {"model": "churn", "version": 3, "gate": "missing"}


def test_champion_after_a_failed_verdict_is_refused_naming_the_failed_rules() -> None:
    with pytest.raises(GateRequiredError) as caught:
        decide(verdict=FAILED)

    assert "its latest gate verdict failed (roc_auc low; f1). Run" in caught.value.message
    assert caught.value.details == {"model": "churn", "version": 3, "gate": "failed"}


def test_a_failed_verdict_whose_rules_all_passed_still_says_why() -> None:
    with pytest.raises(GateRequiredError, match=r"failed \(no rule passed\)"):
        decide(verdict=Verdict(id="r3", passed=False))


@pytest.mark.parametrize(
    ("verdict", "forced"),
    [
        (None, ForcedPromotion(gate="missing", gate_result_id=None, reason="hotfix #12")),
        (FAILED, ForcedPromotion(gate="failed", gate_result_id="r2", reason="hotfix #12")),
    ],
)
def test_forcing_champion_records_the_override(
    verdict: Verdict | None, forced: ForcedPromotion
) -> None:
    move = decide(verdict=verdict, force=True, reason="hotfix #12")

    assert move == AliasMove("champion", 3, forced=forced)
    assert move.event_fields() == {"forced": True, "reason": "hotfix #12"}


def test_forcing_a_passed_champion_is_no_override() -> None:
    assert decide(force=True, reason="sure") == AliasMove("champion", 3, gate_result_id="r1")


def test_forcing_never_moves_an_alias_to_a_version_that_is_not_ready() -> None:
    with pytest.raises(ConflictError, match="only READY"):
        decide(status=VersionStatus.PENDING, verdict=None, force=True, reason="hotfix")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (None, "invalid reason '': expected a non-empty string of at most 2000 characters"),
        ("", "invalid reason '': expected a non-empty string of at most 2000 characters"),
        (" \t\r\n", "a forced promotion needs a reason that is not blank"),
        ("x" * (MAX_REASON + 1), "expected a non-empty string of at most 2000 characters"),
    ],
)
def test_forcing_needs_a_reason_that_is_not_blank(reason: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match="reason") as caught:
        checked_reason(True, reason)
    assert message in caught.value.message
    # Checked before anything else: even an unguarded alias or a version that is not READY.
    with pytest.raises(ValidationError, match="reason"):
        decide(alias="staging", status=VersionStatus.PENDING, force=True, reason=reason)


def test_an_unforced_reason_is_not_checked() -> None:
    assert checked_reason(False, None) is None
    assert checked_reason(False, "  ") == "  "
    assert checked_reason(True, " fine ") == " fine "
    assert checked_reason(True, "x" * MAX_REASON) == "x" * MAX_REASON
