"""The monitor's settings: its rounds, windows, drift thresholds, retention and default
alert rules."""

from __future__ import annotations

from pydantic import Field, field_serializer, model_validator

from loopml.core.alerts import AlertRuleSpec, Comparator, Severity
from loopml.core.errors import ValidationError
from loopml.core.window_sizes import usage_seconds
from loopml.settings._base import _Section


class DefaultAlertRule(_Section):
    """An alert rule the monitor creates for every new deployment, named
    ``DEPLOYMENT-SUFFIX`` (see ``loopml.core.alerts`` for the metrics)."""

    suffix: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,20}$", description="The name's suffix.")
    metric: str = Field(description="The metric it watches (`loopml alerts create --help`).")
    comparator: Comparator = ">"
    threshold: float = Field(allow_inf_nan=False)
    for_s: float = Field(default=0.0, ge=0, le=30 * 86_400)
    window: str = Field(default="1h", pattern=r"^[1-9][0-9]{0,4}[mhd]$")
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _valid_rule(self) -> DefaultAlertRule:
        # The rule it makes must be valid (a known metric, a clear threshold on the resolved
        # side): checked by the rule's own model, not a copy of its checks.
        fields = self.model_dump(exclude={"suffix"})
        AlertRuleSpec(name=f"d-{self.suffix}", deployment="d", **fields)
        return self


def _default_rules() -> list[DefaultAlertRule]:
    return [
        DefaultAlertRule(
            suffix="errors", metric="error_rate", threshold=0.05, for_s=300, severity="warning"
        ),
        DefaultAlertRule(suffix="latency", metric="latency_p99_ms", threshold=1000, for_s=300),
        DefaultAlertRule(suffix="restarts", metric="restarts", threshold=2, severity="critical"),
        DefaultAlertRule(suffix="drift", metric="drift_share", threshold=0.5, for_s=600),
    ]


class MonitorSettings(_Section):
    """Monitoring: windows over the prediction log, drift, live quality and alerts."""

    enabled: bool = Field(
        default=True, description="Run the monitor loop with the API server (`loopml up`)."
    )
    process: bool = Field(
        default=True,
        description="Run the monitor's rounds in a process of its own at a lower priority "
        "(`nice`), so a round takes neither the API server's interpreter nor the serving "
        "processes' share of the core; false: a thread of the API server. Either way the "
        "server counts its own gateway and replicas each round.",
    )
    nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much lower the monitor process's CPU priority is (Unix `nice`; 0: "
        "the same as the server's). With `process` only.",
    )
    interval_s: float = Field(
        default=30.0, gt=0, le=86_400, description="How often the monitor reads what arrived (s)."
    )
    windows: list[str] = Field(
        default_factory=lambda: ["1h", "1d"],
        min_length=1,
        max_length=4,
        description="Tumbling window sizes: a number and a unit, m, h or d (at least 1m). "
        "Drift, live quality, canaries and alert rules read the smallest.",
    )
    usage_window: str = Field(
        default="1m",
        max_length=8,
        description="The size of the usage-only windows the deployment page's charts draw "
        "(requests, errors, latency, callers; no drift or quality): smaller than the "
        "smallest of `windows` and dividing it. Empty: none. Left at its default while "
        "`windows` already has a size of 1m, it is off (those windows draw the line).",
    )
    lag_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Rows are read up to this long before now, so that the prediction log's "
        "batched appends have landed (s).",
    )
    backfill_s: float = Field(
        default=86_400.0,
        ge=0,
        description="On its first look at a deployment, how far back the monitor reads (s).",
    )
    label_horizon_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="Labels are joined to predictions at most this old when the label "
        "arrives (s); older ones are ignored.",
    )
    retention_days: float = Field(
        default=90.0, gt=0, description="Windows that ended longer ago than this are deleted."
    )
    usage_retention_days: float = Field(
        default=2.0,
        gt=0,
        description="Usage-only windows (`usage_window`) that ended longer ago than this are "
        "deleted: 1,440 a day per model version at 1m; the charts of longer periods read "
        "the smallest of `windows`.",
    )
    prediction_retention_days: float = Field(
        default=0.0,
        ge=0,
        description="Prediction-log and feedback rows older than this are deleted from each "
        "deployment's lake tables, once an hour, by the monitor; never rows it has not yet "
        "counted into windows, nor predictions a label may still join (label_horizon_s). "
        "Windows stay. 0 keeps them forever; `loopml tables vacuum` frees the files.",
    )
    drift_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of drifted input columns at which a window's input has drifted, "
        "besides at least one (0: any one column that drifted).",
    )
    drift_min_labels: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Labels joined to a drifted model version's answers made since its "
        "drift's onset before the episode emits `drift.labelled` (what a retrain on drift "
        "should be triggered by); again at twice the count after a refused retrain.",
    )
    drift_p_value: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="The drift false-alarm rate: the chance that a window of unshifted "
        "traffic is called drifted at any of its looks or by the sequential test, whatever "
        "its size and however often the monitor reads it (the window is judged again as its "
        "rows grow by 10 %, at most 128 times, the looks sharing what the sequential test "
        "leaves, `drift_sequential_share`); within a look each column is tested (KS, "
        "chi-square) at its share over the number of columns.",
    )
    drift_sequential_share: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="The share of `drift_p_value` spent by the sequential test over each "
        "window's rows in the order they were answered (CUSUMs: a shift in the middle of a "
        "busy hour seen within about 50 rows); the looks spend the rest. 0 turns it off.",
    )
    drift_distance: float = Field(
        default=0.1, gt=0, description="Wasserstein (normed) and Jensen-Shannon threshold."
    )
    small_reference: int = Field(
        default=1000,
        ge=1,
        description="Reference rows up to which KS / chi-square decide; above, Wasserstein / "
        "Jensen-Shannon.",
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="Hosts or networks (CIDR) that alert webhooks may reach although they are "
        "loopback, link-local or private; every other such target is refused.",
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Timeout of one webhook attempt (s)."
    )
    webhook_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per webhook notification."
    )
    default_rules: list[DefaultAlertRule] = Field(
        default_factory=_default_rules,
        max_length=20,
        description="Alert rules the monitor creates for each new deployment, on its first "
        "round after the deployment appears, named DEPLOYMENT-SUFFIX (by default: `errors`, "
        "error rate over 5 % for 5 minutes; `latency`, p99 over 1 s for 5 minutes; "
        "`restarts`, more than 2 replica crashes in the hour, critical; `drift`, more than "
        "half of the serving version's features drifted over the last hour, for 10 "
        "minutes). A rule deleted afterwards stays deleted; `[]` creates none.",
    )

    @model_validator(mode="after")
    def _valid_usage_window(self) -> MonitorSettings:
        try:
            if self.usage_size() is None:
                self.usage_window = ""
        except ValidationError as error:
            raise ValueError(str(error)) from None
        return self

    @field_serializer("usage_window")
    def _usage_window_in_force(self, value: str) -> str:
        """Dumped as in force ("" when off), so settings handed to a child process (a copy
        made without validation included) validate there as they ran here."""
        try:
            return value if self.usage_size() is not None else ""
        except ValidationError:
            return value

    def usage_size(self) -> tuple[str, int] | None:
        """The usage-only size and its seconds; ``None`` when off: empty, or left at its
        default where it does not fit `windows` (which has 1m already, or is invalid: the
        monitor says so).

        Raises:
            ValidationError: a size set that is invalid or not smaller than the smallest of
                `windows` and a divisor of it.
        """
        if not self.usage_window:
            return None
        try:
            return self.usage_window, usage_seconds(self.usage_window, self.windows)
        except ValidationError:
            if "usage_window" in self.model_fields_set:
                raise
            return None
