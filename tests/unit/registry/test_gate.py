"""The gate in the registry: policies, evaluations, verdicts, and the guarded champion."""

from __future__ import annotations

import pytest

from loopml.core.errors import ConflictError, GateRequiredError, ValidationError
from loopml.core.gate import EvaluationReport, GatePolicy, MinThreshold
from loopml.core.registry import ModelVersion
from loopml.registry import gate, register_version, resolve, set_alias
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events
from tests.tracking_rows import log_model, make_run

EVAL = "e1" * 32


def _versions(store: MetadataStore, artifacts: ArtifactStore, n: int) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    for _ in range(n):
        register_version(
            store, artifacts, project="default", model_name="churn", run_id=run.id, actor="a"
        )


def _report(auc: float, eval_hash: str = EVAL) -> EvaluationReport:
    return EvaluationReport(
        eval_hash=eval_hash,
        task="classification",
        primary_metric="roc_auc",
        metrics={"roc_auc": auc, "accuracy": auc - 0.05},
        rows=50,
    )


def _evaluate(store: MetadataStore, version: int, auc: float) -> None:
    gate.save_evaluation(store, "default", "churn", version, _report(auc), actor="a")


def test_champion_refused_without_a_verdict_and_after_a_failed_one(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 1)
    with pytest.raises(GateRequiredError, match="has not judged it"):
        set_alias(store, "default", "churn", "champion", 1, actor="a")
    gate.set_policy(
        store,
        "default",
        "churn",
        GatePolicy(thresholds=[MinThreshold(metric="roc_auc", min=0.9)]),
        actor="a",
    )
    _evaluate(store, 1, 0.8)
    verdict = gate.judge_version(store, "default", "churn", 1, actor="a")
    assert not verdict.passed
    with pytest.raises(GateRequiredError, match=r"roc_auc = 0.8, required >= 0.9"):
        set_alias(store, "default", "churn", "champion", 1, actor="a")
    # Other aliases are not guarded.
    set_alias(store, "default", "churn", "staging", 1, actor="a")


def test_passed_verdict_allows_promotion_and_default_policy_needs_better(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 3)
    _evaluate(store, 1, 0.80)
    assert gate.judge_version(store, "default", "churn", 1, actor="a").passed
    set_alias(store, "default", "churn", "champion", 1, actor="a")

    _evaluate(store, 2, 0.70)  # worse than the champion on the same eval set
    worse = gate.judge_version(store, "default", "churn", 2, actor="a")
    assert not worse.passed
    assert worse.champion_version == 1
    assert worse.rules[0].champion_value == pytest.approx(0.80)
    with pytest.raises(GateRequiredError):
        set_alias(store, "default", "churn", "champion", 2, actor="a")

    _evaluate(store, 3, 0.85)
    better = gate.judge_version(store, "default", "churn", 3, actor="a")
    assert better.passed
    set_alias(store, "default", "churn", "champion", 3, actor="a")
    assert resolve(store, "default", "churn@champion").version == 3
    with store.session() as session:
        kinds = [e.type for e in events.list_(session, limit=1000).items]
    assert kinds.count("gate.passed") == 2
    assert kinds.count("gate.failed") == 1


def test_a_stated_margin_refuses_a_tie_that_the_default_policy_lets_through(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 3)
    _evaluate(store, 1, 0.80)
    assert gate.judge_version(store, "default", "churn", 1, actor="a").passed
    set_alias(store, "default", "churn", "champion", 1, actor="a")
    _evaluate(store, 2, 0.80)  # the same score as the champion
    assert gate.judge_version(store, "default", "churn", 2, actor="a").passed  # any margin
    tie = gate.judge_version(store, "default", "churn", 2, actor="a", min_delta=0.005)
    assert not tie.passed
    [rule] = tie.rules
    assert (rule.rule, rule.value, rule.champion_value) == ("must_beat", 0.80, 0.80)
    assert tie.policy.min_delta == 0.005
    assert "0.005" in rule.message
    _evaluate(store, 3, 0.806)
    assert gate.judge_version(store, "default", "churn", 3, actor="a", min_delta=0.005).passed
    # A model's own policy asking for more keeps its margin.
    gate.set_policy(
        store, "default", "churn", GatePolicy(must_beat="champion", min_delta=0.01), actor="a"
    )
    stricter = gate.judge_version(store, "default", "churn", 3, actor="a", min_delta=0.005)
    assert (stricter.passed, stricter.policy.min_delta) == (False, 0.01)


def test_forced_promotion_needs_a_reason_and_is_audited(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 1)
    with pytest.raises(ValidationError, match="reason"):
        set_alias(store, "default", "churn", "champion", 1, actor="ada", force=True)
    set_alias(
        store, "default", "churn", "champion", 1, actor="ada", force=True, reason="hotfix #12"
    )
    with store.session() as session:
        forced = events.list_(session, type="model.promotion.forced", limit=10).items
        moved = events.list_(session, type="model.alias.set", limit=10).items
    assert len(forced) == 1
    assert forced[0].actor == "ada"
    assert forced[0].payload["reason"] == "hotfix #12"
    assert forced[0].payload["gate"] == "missing"
    assert moved[-1].payload["forced"] is True


def test_champion_is_scored_on_the_challengers_eval_set(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 2)
    _evaluate(store, 1, 0.9)
    assert gate.judge_version(store, "default", "churn", 1, actor="a").passed
    set_alias(store, "default", "churn", "champion", 1, actor="a")
    other = "f0" * 32
    gate.save_evaluation(store, "default", "churn", 2, _report(0.88, other), actor="a")
    # The champion's 0.9 is on another eval set: it is not used.
    with pytest.raises(ConflictError, match="no evaluation on the challenger's eval set"):
        gate.judge_version(store, "default", "churn", 2, actor="a")
    scored: list[tuple[int, str]] = []

    def score(champion: ModelVersion, challenger: EvaluationReport) -> EvaluationReport:
        scored.append((champion.version, challenger.eval_hash))
        return _report(0.85, challenger.eval_hash)

    verdict = gate.judge_version(store, "default", "churn", 2, actor="a", score_champion=score)
    assert scored == [(1, other)]
    assert verdict.passed
    assert verdict.eval_hash == other
    stored = gate.get_evaluation(store, "default", "churn", 1, other)
    assert stored is not None
    assert stored.report.metrics["roc_auc"] == pytest.approx(0.85)


def test_judging_without_an_evaluation_is_refused(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 1)
    with pytest.raises(ConflictError, match="has no evaluation"):
        gate.judge_version(store, "default", "churn", 1, actor="a")
    assert gate.list_results(store, "default", "churn", 1) == []


def test_judging_the_champion_itself_says_so_and_records_it_as_the_champion(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    _versions(store, artifacts, 2)
    _evaluate(store, 1, 0.80)
    gate.judge_version(store, "default", "churn", 1, actor="a")
    set_alias(store, "default", "churn", "champion", 1, actor="a")
    _evaluate(store, 2, 0.90)
    gate.judge_version(store, "default", "churn", 2, actor="a")
    set_alias(store, "default", "churn", "champion", 2, actor="a")

    again = gate.judge_version(store, "default", "churn", 2, actor="a")
    assert again.passed
    assert again.champion_version == 2
    assert again.rules[0].message == "v2 is the champion: it has no one to beat"
    with store.session() as session:
        verdicts = [e for e in events.list_(session, limit=1000).items if e.type == "gate.passed"]
    assert verdicts[-1].payload["champion_version"] == 2


def test_the_verdict_names_the_metric_that_decided_it_in_its_summary_and_event(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    # With no policy, a version passed over the champion on the report's primary metric
    # and nothing said which metric that was.
    _versions(store, artifacts, 3)
    _evaluate(store, 1, 0.80)
    gate.judge_version(store, "default", "churn", 1, actor="a")
    set_alias(store, "default", "churn", "champion", 1, actor="a")
    _evaluate(store, 2, 0.85)
    better = gate.judge_version(store, "default", "churn", 2, actor="a")
    assert better.passed
    assert better.summary == (
        "on the report's primary metric, roc_auc (a gate policy's compare_metric picks "
        "another): roc_auc 0.85 vs champion v1 0.8 (higher is better, by at least 0)"
    ), better.summary
    assert better.model_dump(mode="json")["summary"] == better.summary
    with store.session() as session:
        passed = [e for e in events.list_(session, limit=1000).items if e.type == "gate.passed"]
    [event] = [e for e in passed if e.payload["version"] == 2]
    assert event.payload["summary"] == better.summary

    # A policy that names its metric and a threshold: a failure names only what failed.
    gate.set_policy(
        store,
        "default",
        "churn",
        GatePolicy(
            thresholds=[MinThreshold(metric="accuracy", min=0.9)],
            must_beat="champion",
            compare_metric="accuracy",
        ),
        actor="a",
    )
    _evaluate(store, 3, 0.86)
    refused = gate.judge_version(store, "default", "churn", 3, actor="a")
    assert not refused.passed
    assert refused.summary == "accuracy = 0.81, required >= 0.9", refused.summary
