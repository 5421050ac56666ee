"""The promotion gate: a policy per registered model, evaluation reports, and verdicts.

A challenger version is judged on its evaluation report (metrics on a frozen eval set,
identified by ``eval_hash``). A ``must_beat: champion`` rule compares it with the current
champion scored on the *same* eval set: reports on different eval sets are never compared.
The registry refuses to point ``champion`` at a version whose latest verdict failed or that
has none, unless forced with a reason (an audited event).

A policy, as YAML::

    thresholds:
      - {metric: roc_auc, min: 0.85}
      - {metric: log_loss, max: 0.4}
    must_beat: champion
    compare_metric: roc_auc     # by default the report's primary metric
    min_delta: 0.005            # better than the champion by at least this much
    latency_p99_ms: 20

No I/O here: ``judge`` is a pure function of the policy and the two reports.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from loopml.core.errors import ValidationError
from loopml.core.yamltext import load_yaml

PROTECTED_ALIAS = "champion"
"""The alias the gate protects: only a version whose latest verdict passed may carry it."""

HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "roc_auc": True, "r2": True}
LOWER_IS_BETTER = {"log_loss": False, "rmse": False, "mae": False}
METRIC_DIRECTIONS: dict[str, bool] = {**HIGHER_IS_BETTER, **LOWER_IS_BETTER}
"""Known metrics, ``True`` when higher is better."""

MAX_POLICY_BYTES = 64 * 1024
MAX_REASON = 2000


MetricName = Literal["accuracy", "f1", "roc_auc", "r2", "log_loss", "rmse", "mae"]
"""A metric a policy may name (keys of ``METRIC_DIRECTIONS``)."""


def _finite(value: float | None, what: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class MinThreshold(_Strict):
    """The metric must be at least ``min``."""

    metric: MetricName
    min: float

    @model_validator(mode="after")
    def _check(self) -> MinThreshold:
        _finite(self.min, "min")
        return self


class MaxThreshold(_Strict):
    """The metric must be at most ``max``."""

    metric: MetricName
    max: float

    @model_validator(mode="after")
    def _check(self) -> MaxThreshold:
        _finite(self.max, "max")
        return self


class GatePolicy(_Strict):
    """What a challenger must show before it may become the champion.

    A threshold is ``{metric, min}`` or ``{metric, max}``; two rules bound both sides.
    """

    thresholds: list[MinThreshold | MaxThreshold] = Field(default_factory=list, max_length=50)
    must_beat: Literal["champion"] | None = Field(
        default=None, description="Also beat the current champion on the same eval set."
    )
    compare_metric: MetricName | None = Field(
        default=None,
        description="The metric of the champion comparison; the report's primary metric "
        "when omitted.",
    )
    min_delta: float = Field(
        default=0.0, ge=0.0, description="How much better than the champion, at least."
    )
    latency_p50_ms: float | None = Field(default=None, gt=0)
    latency_p99_ms: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> GatePolicy:
        _finite(self.min_delta, "min_delta")
        _finite(self.latency_p50_ms, "latency_p50_ms")
        _finite(self.latency_p99_ms, "latency_p99_ms")
        return self


def parse_policy(text: str) -> GatePolicy:
    """A policy from YAML or JSON text (safe loader only).

    Raises:
        ValidationError: not a mapping, unknown fields or metrics, bad bounds.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise ValidationError(f"a gate policy is at most {MAX_POLICY_BYTES} bytes")
    data = load_yaml(text, "gate policy")
    if not isinstance(data, dict):
        raise ValidationError("a gate policy is a mapping (thresholds, must_beat, ...)")
    try:
        return GatePolicy.model_validate(data)
    except Exception as exc:
        raise ValidationError(f"invalid gate policy: {exc}") from exc


class Latency(_Strict):
    """Single-row predict latency of the packaged model, in milliseconds."""

    p50_ms: float
    p99_ms: float


class EvaluationReport(BaseModel):
    """A model version's metrics on one frozen eval set (``eval_hash``).

    Attributes:
        task: ``classification`` or ``regression``.
        primary_metric: the metric a comparison uses by default.
        metrics: metric name to value (known metrics: ``METRIC_DIRECTIONS``).
        details: what is not a single number (a confusion matrix, its labels).
        latency: single-row predict latency, when measured.
        dataset: the dataset version the eval set belongs to (``name@3``), if known.
    """

    model_config = ConfigDict(frozen=True)

    eval_hash: str = Field(pattern=r"^[0-9a-f]{16,64}$")
    task: Literal["classification", "regression"]
    primary_metric: MetricName
    metrics: dict[str, float]
    rows: int = Field(ge=0)
    details: dict[str, Any] = Field(default_factory=dict)
    latency: Latency | None = None
    dataset: str | None = None


class StoredEvaluation(BaseModel):
    """An evaluation report as the registry holds it, for one model version."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    report: EvaluationReport
    actor: str
    created_at: datetime


class RuleOutcome(BaseModel):
    """One rule of a verdict, with the values it compared."""

    model_config = ConfigDict(frozen=True)

    rule: Literal["threshold", "must_beat", "latency"]
    metric: str
    passed: bool
    value: float | None = None
    bound: float | None = None
    champion_value: float | None = None
    message: str


class GateResult(BaseModel):
    """The gate's verdict on one version: every rule, and whether all passed."""

    model_config = ConfigDict(frozen=True)

    id: str
    project: str
    model: str
    version: int
    passed: bool
    eval_hash: str
    champion_version: int | None
    rules: list[RuleOutcome]
    policy: GatePolicy
    actor: str
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        """What decided the verdict, in one line (``verdict_summary``)."""
        return verdict_summary(self.passed, self.rules, self.policy)


def verdict_summary(passed: bool, rules: list[RuleOutcome], policy: GatePolicy) -> str:
    """What decided a verdict, as a person reads it: the rules that failed (or, when all
    passed, every rule), each with its metric and figures. A champion comparison on a metric
    the policy did not choose says it was the report's primary metric."""
    deciding = rules if passed else [r for r in rules if not r.passed]
    if not deciding:
        return "no rules to apply: the policy has none"
    parts = []
    for rule in deciding:
        text = rule.message
        if (
            rule.rule == "must_beat"
            and rule.champion_value is not None
            and not (policy.compare_metric)
        ):
            text = (
                f"on the report's primary metric, {rule.metric} (a gate policy's "
                f"compare_metric picks another): {text}"
            )
        elif rule.metric not in text:
            text = f"{rule.metric}: {text}"
        parts.append(text)
    return "; ".join(parts)


def _better(metric: str, challenger: float, champion: float, delta: float) -> bool:
    if METRIC_DIRECTIONS[metric]:
        return challenger >= champion + delta
    return challenger <= champion - delta


def judge(
    policy: GatePolicy,
    challenger: EvaluationReport,
    champion: EvaluationReport | None,
    *,
    champion_version: int | None = None,
    is_champion: bool = False,
) -> list[RuleOutcome]:
    """Every rule of ``policy`` applied to ``challenger`` (and ``champion``, when one exists).

    ``is_champion`` says the version judged is the champion itself (``champion_version``):
    its ``must_beat`` rule then says so instead of comparing it with itself.

    Raises:
        ValidationError: the two reports are on different eval sets.
    """
    if champion is not None and champion.eval_hash != challenger.eval_hash:
        raise ValidationError(
            "the challenger and the champion must be scored on the same eval set: got "
            f"{challenger.eval_hash[:12]} and {champion.eval_hash[:12]}",
            details={"challenger": challenger.eval_hash, "champion": champion.eval_hash},
        )
    outcomes = [_threshold(t, challenger) for t in policy.thresholds]
    for field, bound in (("p50_ms", policy.latency_p50_ms), ("p99_ms", policy.latency_p99_ms)):
        if bound is not None:
            outcomes.append(_latency(field, bound, challenger))
    if policy.must_beat == "champion":
        if is_champion:
            outcomes.append(_is_champion(policy, challenger, champion_version))
        else:
            outcomes.append(_must_beat(policy, challenger, champion, champion_version))
    return outcomes


def _is_champion(policy: GatePolicy, report: EvaluationReport, version: int | None) -> RuleOutcome:
    metric = policy.compare_metric or report.primary_metric
    return RuleOutcome(
        rule="must_beat",
        metric=metric,
        passed=True,
        value=report.metrics.get(metric),
        message=f"v{version} is the champion: it has no one to beat",
    )


def _threshold(rule: MinThreshold | MaxThreshold, report: EvaluationReport) -> RuleOutcome:
    value = report.metrics.get(rule.metric)
    if value is None or not math.isfinite(value):
        return RuleOutcome(
            rule="threshold",
            metric=rule.metric,
            passed=False,
            message=f"{rule.metric} is not in the evaluation report",
        )
    if isinstance(rule, MinThreshold):
        bound, passed, word = rule.min, value >= rule.min, ">="
    else:
        bound, passed, word = rule.max, value <= rule.max, "<="
    return RuleOutcome(
        rule="threshold",
        metric=rule.metric,
        passed=passed,
        value=value,
        bound=bound,
        message=f"{rule.metric} = {value:.6g}, required {word} {bound:.6g}",
    )


def _latency(field: str, bound: float, report: EvaluationReport) -> RuleOutcome:
    metric = f"latency_{field}"
    if report.latency is None:
        return RuleOutcome(
            rule="latency",
            metric=metric,
            passed=False,
            bound=bound,
            message="the evaluation report has no latency measurement",
        )
    value = float(getattr(report.latency, field))
    return RuleOutcome(
        rule="latency",
        metric=metric,
        passed=value <= bound,
        value=value,
        bound=bound,
        message=f"single-row {field[:3]} latency {value:.3g} ms, budget {bound:.3g} ms",
    )


def _must_beat(
    policy: GatePolicy,
    challenger: EvaluationReport,
    champion: EvaluationReport | None,
    champion_version: int | None,
) -> RuleOutcome:
    metric = policy.compare_metric or challenger.primary_metric
    value = challenger.metrics.get(metric)
    if metric not in METRIC_DIRECTIONS or value is None:
        return RuleOutcome(
            rule="must_beat",
            metric=metric,
            passed=False,
            message=f"{metric} is not a comparable metric of the evaluation report",
        )
    if champion is None:
        return RuleOutcome(
            rule="must_beat",
            metric=metric,
            passed=True,
            value=value,
            message=f"no champion yet: nothing to beat on {metric}",
        )
    theirs = champion.metrics.get(metric)
    if theirs is None:
        return RuleOutcome(
            rule="must_beat",
            metric=metric,
            passed=False,
            value=value,
            message=f"the champion's report has no {metric}",
        )
    passed = _better(metric, value, theirs, policy.min_delta)
    direction = "higher" if METRIC_DIRECTIONS[metric] else "lower"
    return RuleOutcome(
        rule="must_beat",
        metric=metric,
        passed=passed,
        value=value,
        champion_value=theirs,
        bound=policy.min_delta,
        message=f"{metric} {value:.6g} vs champion v{champion_version} {theirs:.6g} "
        f"({direction} is better, by at least {policy.min_delta:g})",
    )
