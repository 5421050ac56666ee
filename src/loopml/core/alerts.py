"""Alert rules: their definition, the metrics they can watch, and the state machine (pure:
the monitor evaluates rules with it; the client and CLI share the types).

A rule watches one metric of a deployment over the last stretch of time of its window's
size (``monitor.trailing``: the smallest windows summed, not the newest tumbling window of
that size, nearly empty right after it turns). When the metric
crosses ``threshold`` the rule is ``pending``; when it has stayed across for ``for_s``
seconds it is ``firing`` (``alert.firing``). It resolves (``alert.resolved``) only once the
metric is back past ``clear_threshold`` (hysteresis: a value wavering at the threshold does
not flap). A pending rule whose metric comes back simply returns to ``ok``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Comparator = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
State = Literal["ok", "pending", "firing"]
RULE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
QUALITY_METRICS = frozenset(
    {
        "accuracy",
        "f1",
        "roc_auc",
        "log_loss",
        "rmse",
        "mae",
        "r2",
        "estimated_accuracy",
        "estimated_mae",
        "estimated_rmse",
    }
)
METRICS: dict[str, str] = {
    "requests": "requests in the window (answered and failed)",
    "requests_per_s": "requests per second over the window",
    "error_rate": "failed requests / requests",
    "latency_p50_ms": "median latency (ms)",
    "latency_p95_ms": "95th percentile latency (ms)",
    "latency_p99_ms": "99th percentile latency (ms)",
    "drift_share": "share of input columns that drifted",
    "prediction_drift": "1 when the prediction's distribution drifted, else 0",
    "missing_share": "largest missing-value share of any input column",
    "label_coverage": "labelled rows / rows",
    "accuracy": "live accuracy (labels joined by inference id)",
    "f1": "live macro F1",
    "roc_auc": "live ROC AUC (two classes)",
    "log_loss": "live log loss",
    "rmse": "live RMSE",
    "mae": "live MAE",
    "r2": "live R2",
    "estimated_accuracy": "accuracy estimated before labels (CBPE: mean probability of the "
    "predicted class, calibrated on the eval set when the reference has a table)",
    "estimated_mae": "a regressor's MAE estimated before labels (its eval set's errors at "
    "each row's predicted value)",
    "estimated_rmse": "a regressor's RMSE estimated before labels (as estimated_mae)",
    "cpu_percent": "the busiest replica's mean CPU (% of one core)",
    "rss_mb": "the largest replica's peak resident memory (MB)",
    "restarts": "replica restarts after a crash",
}
RESOURCE_METRICS = frozenset({"cpu_percent", "rss_mb", "restarts"})


class AlertRuleSpec(BaseModel):
    """What a person writes to create a rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=RULE_NAME.pattern, max_length=63, description="Unique in the project."
    )
    deployment: str = Field(
        pattern=r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", max_length=40, description="The deployment."
    )
    metric: str = Field(description="One of: " + ", ".join(sorted(METRICS)) + ".")
    comparator: Comparator = Field(description="How the metric is compared with the threshold.")
    threshold: float = Field(allow_inf_nan=False, description="The value that starts an alert.")
    clear_threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="The value the metric must come back past to resolve (hysteresis); "
        "defaults to the threshold moved 10 % back (or the threshold itself when it is 0).",
    )
    for_s: float = Field(
        default=0.0, ge=0, le=30 * 86_400, description="How long it must hold before firing (s)."
    )
    window: str = Field(
        default="1h",
        pattern=r"^[1-9][0-9]{0,4}[mhd]$",
        description="The stretch of time read: the last `window` up to now.",
    )
    severity: Severity = "warning"
    webhook: str | None = Field(
        default=None, max_length=2000, description="A URL notified on firing and resolving."
    )

    @model_validator(mode="after")
    def _check(self) -> AlertRuleSpec:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}: expected one of {sorted(METRICS)}")
        clear = self.clear()
        above = self.comparator in (">", ">=")
        if (above and clear > self.threshold) or (not above and clear < self.threshold):
            raise ValueError(
                f"clear_threshold {clear} must be on the resolved side of threshold "
                f"{self.threshold} for comparator {self.comparator!r}"
            )
        return self

    def clear(self) -> float:
        """The clear threshold in force."""
        if self.clear_threshold is not None:
            return self.clear_threshold
        margin = abs(self.threshold) * 0.1
        return (
            self.threshold - margin if self.comparator in (">", ">=") else self.threshold + margin
        )


class AlertRule(AlertRuleSpec):
    """A stored rule with its state."""

    id: str
    project: str
    enabled: bool = True
    silenced_until: datetime | None = None
    state: State = "ok"
    state_since: datetime | None = None
    last_value: float | None = None
    created_at: datetime
    updated_at: datetime


def breaches(value: float, comparator: Comparator, threshold: float) -> bool:
    """Whether ``value`` is across ``threshold``."""
    if comparator == ">":
        return value > threshold
    if comparator == ">=":
        return value >= threshold
    if comparator == "<":
        return value < threshold
    return value <= threshold


@dataclass(frozen=True)
class Transition:
    """The rule's next state, and the event to emit (``None``: nothing to say)."""

    state: State
    since: datetime | None
    event: Literal["alert.firing", "alert.resolved"] | None


def step(
    spec: AlertRuleSpec, state: State, since: datetime | None, value: float | None, now: datetime
) -> Transition:
    """The state machine: where a rule in ``state`` goes when its metric reads ``value``."""
    if value is None:  # nothing measured (no traffic, no labels): hold
        return Transition(state, since, None)
    crossed = breaches(value, spec.comparator, spec.threshold)
    if state == "firing":
        above = spec.comparator in (">", ">=")
        if value < spec.clear() if above else value > spec.clear():
            return Transition("ok", now, "alert.resolved")
        return Transition("firing", since, None)
    if not crossed:
        return Transition("ok", now if state != "ok" else since, None)
    start = since if state == "pending" and since is not None else now
    if (now - start).total_seconds() >= spec.for_s:
        return Transition("firing", now, "alert.firing")
    return Transition("pending", start, None)


def metric_value(summary: dict[str, Any], metric: str) -> float | None:
    """The value of ``metric`` in a window's summary (``None`` when not measured)."""
    used = summary.get("usage", {})
    drift = summary.get("drift", {})
    quality = summary.get("quality", {})
    if metric in RESOURCE_METRICS:
        value = summary.get("resources", {}).get(metric)
    elif metric in used and metric != "roles":
        value = used[metric]
    elif metric == "drift_share":
        value = drift.get("share") if drift.get("judged") else None
    elif metric == "prediction_drift":
        prediction = drift.get("prediction")
        value = float(prediction["drifted"]) if prediction and prediction["judged"] else None
    elif metric == "missing_share":
        shares = [c["missing_share"] for c in drift.get("columns", [])]
        value = max(shares) if shares else None
    else:
        value = _quality_value(quality, metric)
    return float(value) if isinstance(value, int | float) else None


def _quality_value(quality: dict[str, Any], metric: str) -> Any:
    if metric == "label_coverage":
        return quality.get("coverage")
    if metric.startswith("estimated_"):
        return (quality.get("estimated") or {}).get(metric.removeprefix("estimated_"))
    return quality.get(metric)
