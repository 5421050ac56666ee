"""The gate's rules as a pure function: thresholds, champion comparison, latency, policies."""

from __future__ import annotations

import pytest

from loopml.core.errors import ValidationError
from loopml.core.gate import (
    EvaluationReport,
    GatePolicy,
    Latency,
    MaxThreshold,
    MinThreshold,
    judge,
    parse_policy,
)

EVAL = "ab" * 32


def report(
    eval_hash: str = EVAL, latency: Latency | None = None, **metrics: float
) -> EvaluationReport:
    return EvaluationReport(
        eval_hash=eval_hash,
        task="classification",
        primary_metric="roc_auc",
        metrics=metrics,
        rows=100,
        latency=latency,
    )


def test_thresholds_pass_and_fail_with_values() -> None:
    policy = GatePolicy(
        thresholds=[
            MinThreshold(metric="roc_auc", min=0.8),
            MaxThreshold(metric="log_loss", max=0.5),
        ]
    )
    good = judge(policy, report(roc_auc=0.9, log_loss=0.3), None)
    assert [r.passed for r in good] == [True, True]
    bad = judge(policy, report(roc_auc=0.7, log_loss=0.6), None)
    assert [r.passed for r in bad] == [False, False]
    assert bad[0].value == 0.7
    assert bad[0].bound == 0.8
    assert ">= 0.8" in bad[0].message


def test_missing_metric_fails_its_threshold() -> None:
    policy = GatePolicy(thresholds=[MinThreshold(metric="f1", min=0.5)])
    (outcome,) = judge(policy, report(roc_auc=0.9), None)
    assert not outcome.passed
    assert "not in the evaluation report" in outcome.message


@pytest.mark.parametrize(
    ("mine", "theirs", "delta", "passed"),
    [
        (0.91, 0.90, 0.0, True),
        (0.90, 0.90, 0.0, True),
        (0.89, 0.90, 0.0, False),
        (0.905, 0.90, 0.01, False),
        (0.92, 0.90, 0.01, True),
    ],
)
def test_must_beat_champion_higher_is_better(
    mine: float, theirs: float, delta: float, passed: bool
) -> None:
    policy = GatePolicy(must_beat="champion", min_delta=delta)
    (outcome,) = judge(policy, report(roc_auc=mine), report(roc_auc=theirs), champion_version=3)
    assert outcome.passed is passed
    assert outcome.champion_value == theirs
    assert "champion v3" in outcome.message


def test_must_beat_on_a_lower_is_better_metric() -> None:
    policy = GatePolicy(must_beat="champion", compare_metric="log_loss", min_delta=0.05)
    (ok,) = judge(policy, report(log_loss=0.20), report(log_loss=0.30))
    (worse,) = judge(policy, report(log_loss=0.28), report(log_loss=0.30))
    assert ok.passed
    assert not worse.passed


def test_no_champion_passes_must_beat() -> None:
    (outcome,) = judge(GatePolicy(must_beat="champion"), report(roc_auc=0.6), None)
    assert outcome.passed
    assert "no champion" in outcome.message


def test_different_eval_sets_are_never_compared() -> None:
    with pytest.raises(ValidationError, match="same eval set"):
        judge(GatePolicy(must_beat="champion"), report(roc_auc=0.9), report("cd" * 32, roc_auc=0.8))


def test_latency_budget() -> None:
    policy = GatePolicy(latency_p99_ms=5.0)
    (fast,) = judge(policy, report(latency=Latency(p50_ms=1.0, p99_ms=4.0), roc_auc=0.9), None)
    (slow,) = judge(policy, report(latency=Latency(p50_ms=1.0, p99_ms=9.0), roc_auc=0.9), None)
    (unmeasured,) = judge(policy, report(roc_auc=0.9), None)
    assert fast.passed
    assert not slow.passed
    assert not unmeasured.passed


def test_parse_policy_yaml_and_refusals() -> None:
    policy = parse_policy(
        "thresholds:\n  - {metric: roc_auc, min: 0.8}\nmust_beat: champion\nmin_delta: 0.01\n"
    )
    assert policy.must_beat == "champion"
    assert policy.thresholds[0].min == 0.8
    for text, needle in [
        ("- 1\n- 2\n", "mapping"),
        ("thresholds: [{metric: bogus, min: 1}]", "metric"),
        ("thresholds: [{metric: f1}]", "min"),
        ("thresholds: [{metric: f1, min: 0.9, max: 0.1}]", "max"),
        ("compare_metric: ''", "compare_metric"),
        ("must_beat: production", "must_beat"),
        ("min_delta: -1", "min_delta"),
        ("surprise: 1", "surprise"),
        ("!!python/object/apply:os.system ['true']", "not valid YAML"),
    ]:
        with pytest.raises(ValidationError, match=needle):
            parse_policy(text)
