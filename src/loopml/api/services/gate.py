"""The promotion gate behind the API: policies, evaluation reports and verdicts."""

from __future__ import annotations

from loopml.core.gate import EvaluationReport, GatePolicy, GateResult, StoredEvaluation
from loopml.registry import evaluate, gate
from loopml.web.context import AppContext


def set_policy(
    ctx: AppContext, project: str, model: str, policy: GatePolicy, actor: str
) -> GatePolicy:
    """Create or replace a model's gate policy."""
    return gate.set_policy(ctx.store, project, model, policy, actor=actor)


def get_policy(ctx: AppContext, project: str, model: str) -> GatePolicy:
    """A model's gate policy: its own, or the default one (beat the champion)."""
    return gate.get_policy(ctx.store, project, model) or gate.DEFAULT_POLICY


def delete_policy(ctx: AppContext, project: str, model: str, actor: str) -> None:
    """Drop a model's policy; the default one applies again."""
    gate.delete_policy(ctx.store, project, model, actor=actor)


def save_evaluation(
    ctx: AppContext, project: str, model: str, version: int, report: EvaluationReport, actor: str
) -> StoredEvaluation:
    """Store an evaluation report computed elsewhere."""
    return gate.save_evaluation(ctx.store, project, model, version, report, actor=actor)


def list_evaluations(
    ctx: AppContext, project: str, model: str, version: int
) -> list[StoredEvaluation]:
    """A version's evaluations, newest first."""
    return gate.list_evaluations(ctx.store, project, model, version)


def judge(
    ctx: AppContext, project: str, model: str, version: int, eval_hash: str | None, actor: str
) -> GateResult:
    """Judge a version by its model's policy and record the verdict; the champion is scored
    on the challenger's eval set first when it never was."""
    scorer = evaluate.champion_scorer(ctx.store, ctx.artifacts, project, actor=actor)
    return gate.judge_version(
        ctx.store,
        project,
        model,
        version,
        actor=actor,
        eval_hash=eval_hash,
        score_champion=scorer,
    )


def evaluate_version(
    ctx: AppContext,
    project: str,
    model: str,
    version: int,
    dataset: str | None,
    target: str | None,
    actor: str,
) -> StoredEvaluation:
    """Score a version on a dataset's frozen eval set (by default the one it trained on)."""
    return evaluate.evaluate_version(
        ctx.store,
        ctx.artifacts,
        project,
        model,
        version,
        actor=actor,
        dataset=dataset,
        target=target,
    )


def list_results(
    ctx: AppContext, project: str, model: str, version: int, limit: int
) -> list[GateResult]:
    """A version's verdicts, newest first."""
    return gate.list_results(ctx.store, project, model, version, limit=limit)
