"""Judging a canary against the stable revision: hold it, roll it back, or promote it.

A pure policy, as ``gate.py`` is for model versions: the figures come from the monitor's
windows (``monitor.compare``), the acting is the deployment control plane's
(``deploy.canary``). Each revision's figures cover the time since the canary started:

- **hold** while either revision has served fewer than ``min_requests`` requests (answered
  and failed): too few to tell anything apart;
- **roll back** as soon as the canary is worse than the stable revision by more than a
  margin on any of: its error rate (``max_error_rate_increase``, an absolute difference of
  shares), its 95th-percentile latency (more than ``max_latency_ratio`` times the stable
  one *and* more than ``latency_slack_ms`` slower, so that a millisecond of noise on a fast
  model never decides), or its live quality once both revisions have ``min_labels`` labels
  (accuracy for a classifier, R2 for a regressor, lower by more than ``max_quality_drop``);
- **promote** once it has been compared for ``promote_after_s`` without being worse. Quality
  that labels do not cover yet is not waited for: the reasons say it was not compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Action = Literal["hold", "rollback", "promote"]


@dataclass(frozen=True)
class Figures:
    """What the monitor measured for one revision since the canary started.

    Attributes:
        requests: requests answered and failed.
        errors: requests that failed (HTTP 4xx and 5xx).
        latency_p95_ms: the 95th percentile of answered requests' latency, if any.
        labels: feedback labels joined to its predictions.
        quality: live accuracy (classification) or R2 (regression), higher is better.
        quality_metric: ``accuracy`` or ``r2``; ``None`` while no label is joined.
    """

    requests: int = 0
    errors: int = 0
    latency_p95_ms: float | None = None
    labels: int = 0
    quality: float | None = None
    quality_metric: str | None = None

    @property
    def error_rate(self) -> float:
        """Failed requests / requests (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures and the error rate, for an event's payload."""
        return {**asdict(self), "error_rate": self.error_rate}


@dataclass(frozen=True)
class CanaryPolicy:
    """The margins and waits a canary is judged by (see the module docstring)."""

    max_error_rate_increase: float = 0.02
    max_latency_ratio: float = 1.5
    latency_slack_ms: float = 20.0
    max_quality_drop: float = 0.05
    min_requests: int = 100
    min_labels: int = 50
    promote_after_s: float = 3600.0

    def with_overrides(self, overrides: dict[str, Any]) -> CanaryPolicy:
        """This policy with the fields ``overrides`` sets (``None`` keeps this one's)."""
        given = {k: v for k, v in overrides.items() if v is not None and hasattr(self, k)}
        return CanaryPolicy(**{**asdict(self), **given})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What to do with the canary, and why (one sentence per reason, with the numbers)."""

    action: Action
    reasons: tuple[str, ...]


def judge(canary: Figures, stable: Figures, policy: CanaryPolicy, elapsed_s: float) -> Decision:
    """Hold, roll back or promote the canary after ``elapsed_s`` seconds beside ``stable``."""
    fewest = policy.min_requests
    if canary.requests < fewest or stable.requests < fewest:
        return Decision(
            "hold",
            (
                f"waiting for {fewest} requests on each revision (canary {canary.requests}, "
                f"stable {stable.requests})",
            ),
        )
    worse = [*_errors(canary, stable, policy), *_latency(canary, stable, policy)]
    quality, note = _quality(canary, stable, policy)
    worse += quality
    if worse:
        return Decision("rollback", tuple(worse))
    if elapsed_s < policy.promote_after_s:
        return Decision(
            "hold",
            (
                f"no worse than the stable revision so far; judged for {elapsed_s:.0f} s of "
                f"{policy.promote_after_s:g} s",
                *note,
            ),
        )
    return Decision(
        "promote",
        (
            f"no worse than the stable revision after {elapsed_s:.0f} s (error rate "
            f"{canary.error_rate:.2%} against {stable.error_rate:.2%}, "
            f"{canary.requests} requests)",
            *note,
        ),
    )


def _errors(canary: Figures, stable: Figures, policy: CanaryPolicy) -> list[str]:
    increase = canary.error_rate - stable.error_rate
    if increase <= policy.max_error_rate_increase:
        return []
    return [
        f"error rate {canary.error_rate:.2%} ({canary.errors} of {canary.requests}) against "
        f"{stable.error_rate:.2%} on the stable revision: {increase:.2%} more, over the "
        f"margin of {policy.max_error_rate_increase:.2%}"
    ]


def _latency(canary: Figures, stable: Figures, policy: CanaryPolicy) -> list[str]:
    mine, theirs = canary.latency_p95_ms, stable.latency_p95_ms
    if mine is None or theirs is None:
        return []
    if mine <= theirs * policy.max_latency_ratio or mine - theirs <= policy.latency_slack_ms:
        return []
    return [
        f"latency p95 {mine:.1f} ms against {theirs:.1f} ms on the stable revision: "
        f"{mine / theirs if theirs else float('inf'):.2f} times, over the ratio of "
        f"{policy.max_latency_ratio:g} (and more than {policy.latency_slack_ms:g} ms slower)"
    ]


def _quality(
    canary: Figures, stable: Figures, policy: CanaryPolicy
) -> tuple[list[str], tuple[str, ...]]:
    """The rollback reason on quality, if any, and a note when it was not compared."""
    enough = min(canary.labels, stable.labels) >= policy.min_labels
    if not enough or canary.quality is None or stable.quality is None:
        return [], (
            f"quality not compared: {policy.min_labels} labels needed on each revision "
            f"(canary {canary.labels}, stable {stable.labels})",
        )
    if canary.quality_metric != stable.quality_metric:
        return [], (
            f"quality not compared: the canary is measured by {canary.quality_metric}, the "
            f"stable revision by {stable.quality_metric}",
        )
    drop = stable.quality - canary.quality
    if drop <= policy.max_quality_drop:
        return [], ()
    metric = canary.quality_metric
    return [
        f"{metric} {canary.quality:.3f} ({canary.labels} labels) against {stable.quality:.3f} "
        f"({stable.labels} labels) on the stable revision: {drop:.3f} lower, over the margin "
        f"of {policy.max_quality_drop:g}"
    ], ()
