"""Judging a canary as a pure function: minimum requests, each margin, the promotion wait,
quality only once labels cover both revisions."""

from __future__ import annotations

import pytest

from loopml.core.canary import CanaryPolicy, Figures, judge

POLICY = CanaryPolicy(
    max_error_rate_increase=0.02,
    max_latency_ratio=1.5,
    latency_slack_ms=20.0,
    max_quality_drop=0.05,
    min_requests=100,
    min_labels=50,
    promote_after_s=600,
)
STABLE = Figures(requests=1000, errors=10, latency_p95_ms=40.0)


def test_too_few_requests_on_either_revision_holds_whatever_the_figures() -> None:
    failing = Figures(requests=99, errors=99, latency_p95_ms=9000.0)
    held = judge(failing, STABLE, POLICY, elapsed_s=10_000)
    assert held.action == "hold"
    assert "canary 99, stable 1000" in held.reasons[0]
    quiet_stable = Figures(requests=50, latency_p95_ms=40.0)
    assert judge(Figures(requests=500), quiet_stable, POLICY, 10_000).action == "hold"


@pytest.mark.parametrize(
    ("errors", "action"),
    [(20, "hold"), (30, "hold"), (31, "rollback"), (35, "rollback")],
)
def test_the_error_rate_margin_is_over_the_stable_revisions_rate(errors: int, action: str) -> None:
    # The stable revision fails 1 %: up to 3 % (1 % + the 2 % margin) is not worse.
    canary = Figures(requests=1000, errors=errors, latency_p95_ms=40.0)
    decision = judge(canary, STABLE, POLICY, elapsed_s=60)
    assert decision.action == action
    if errors == 35:
        assert decision.reasons == (
            "error rate 3.50% (35 of 1000) against 1.00% on the stable revision: 2.50% more, "
            "over the margin of 2.00%",
        )


@pytest.mark.parametrize(
    ("stable_ms", "canary_ms", "action"),
    [
        (40.0, 59.0, "hold"),  # 1.48 times: under the ratio
        (40.0, 61.0, "rollback"),  # 1.53 times and 21 ms slower
        (4.0, 20.0, "hold"),  # 5 times, but 16 ms: under the slack
        (4.0, 25.0, "rollback"),  # 6 times and 21 ms slower
    ],
)
def test_latency_needs_both_the_ratio_and_the_slack(
    stable_ms: float, canary_ms: float, action: str
) -> None:
    stable = Figures(requests=1000, latency_p95_ms=stable_ms)
    canary = Figures(requests=1000, latency_p95_ms=canary_ms)
    decision = judge(canary, stable, POLICY, elapsed_s=60)
    assert decision.action == action
    if (stable_ms, action) == (40.0, "rollback"):
        assert decision.reasons == (
            "latency p95 61.0 ms against 40.0 ms on the stable revision: 1.52 times, over the "
            "ratio of 1.5 (and more than 20 ms slower)",
        )


def test_quality_is_compared_once_both_revisions_have_enough_labels() -> None:
    stable = Figures(requests=500, labels=400, quality=0.93, quality_metric="accuracy")
    worse = Figures(requests=500, labels=49, quality=0.40, quality_metric="accuracy")
    held = judge(worse, stable, POLICY, elapsed_s=60)
    assert held.action == "hold"
    assert "quality not compared: 50 labels needed on each revision (canary 49" in held.reasons[1]

    labelled = Figures(requests=500, labels=50, quality=0.40, quality_metric="accuracy")
    rolled = judge(labelled, stable, POLICY, elapsed_s=60)
    assert rolled.action == "rollback"
    assert rolled.reasons == (
        "accuracy 0.400 (50 labels) against 0.930 (400 labels) on the stable revision: 0.530 "
        "lower, over the margin of 0.05",
    )
    close = Figures(requests=500, labels=80, quality=0.89, quality_metric="accuracy")
    assert judge(close, stable, POLICY, elapsed_s=60).action == "hold"


def test_a_canary_no_worse_is_promoted_after_the_wait_even_without_labels() -> None:
    canary = Figures(requests=300, errors=3, latency_p95_ms=41.0)
    early = judge(canary, STABLE, POLICY, elapsed_s=599)
    assert early.action == "hold"
    assert early.reasons[0] == (
        "no worse than the stable revision so far; judged for 599 s of 600 s"
    )
    promoted = judge(canary, STABLE, POLICY, elapsed_s=600)
    assert promoted.action == "promote"
    assert promoted.reasons == (
        "no worse than the stable revision after 600 s (error rate 1.00% against 1.00%, "
        "300 requests)",
        "quality not compared: 50 labels needed on each revision (canary 0, stable 0)",
    )


def test_several_reasons_are_all_given() -> None:
    stable = Figures(
        requests=1000,
        errors=0,
        latency_p95_ms=10.0,
        labels=100,
        quality=0.9,
        quality_metric="accuracy",
    )
    canary = Figures(
        requests=1000,
        errors=100,
        latency_p95_ms=100.0,
        labels=100,
        quality=0.5,
        quality_metric="accuracy",
    )
    decision = judge(canary, stable, POLICY, elapsed_s=10_000)
    assert decision.action == "rollback"
    assert [r.split(" ", 1)[0] for r in decision.reasons] == ["error", "latency", "accuracy"]
