"""The promotion gate's services: policies, evaluations and verdicts of model versions.

``judge_version`` applies the model's policy to a version's evaluation report. When the
policy says ``must_beat: champion`` and the champion was never scored on the challenger's
eval set, the caller's ``score_champion`` scores it there first (the registry cannot read
datasets itself); the two are never compared on different eval sets.

A model without a policy is judged by ``DEFAULT_POLICY``: beat the champion (any margin).
"""

from __future__ import annotations

from collections.abc import Callable

from loopml.core.errors import ConflictError
from loopml.core.gate import (
    EvaluationReport,
    GatePolicy,
    GateResult,
    StoredEvaluation,
    judge,
)
from loopml.core.registry import ModelVersion
from loopml.store import MetadataStore, gates

DEFAULT_POLICY = GatePolicy(must_beat="champion")

ChampionScorer = Callable[[ModelVersion, EvaluationReport], EvaluationReport]
"""``(champion version, challenger's report) -> champion's report on the same eval set``."""


def set_policy(
    store: MetadataStore, project: str, model: str, policy: GatePolicy, *, actor: str
) -> GatePolicy:
    """Create or replace the model's gate policy."""
    with store.session() as session:
        return gates.set_policy(session, project, model, policy, actor=actor)


def get_policy(store: MetadataStore, project: str, model: str) -> GatePolicy | None:
    """The model's own gate policy, ``None`` when it uses ``DEFAULT_POLICY``."""
    with store.session() as session:
        return gates.get_policy(session, project, model)


def policy_in_force(store: MetadataStore, project: str, model: str) -> GatePolicy:
    """The policy a model is judged by: its own, or ``DEFAULT_POLICY`` (beat the champion)."""
    return get_policy(store, project, model) or DEFAULT_POLICY


def delete_policy(store: MetadataStore, project: str, model: str, *, actor: str) -> None:
    """Drop the model's policy: ``DEFAULT_POLICY`` applies again."""
    with store.session() as session:
        gates.delete_policy(session, project, model, actor=actor)


def save_evaluation(
    store: MetadataStore,
    project: str,
    model: str,
    version: int,
    report: EvaluationReport,
    *,
    actor: str,
) -> StoredEvaluation:
    """Store a version's evaluation report (replacing one on the same eval set)."""
    with store.session() as session:
        return gates.save_evaluation(session, project, model, version, report, actor=actor)


def get_evaluation(
    store: MetadataStore, project: str, model: str, version: int, eval_hash: str | None = None
) -> StoredEvaluation | None:
    """A version's evaluation on ``eval_hash`` (its newest one when ``None``)."""
    with store.session() as session:
        return gates.get_evaluation(session, project, model, version, eval_hash)


def list_evaluations(
    store: MetadataStore, project: str, model: str, version: int
) -> list[StoredEvaluation]:
    """Every evaluation of a version, newest first."""
    with store.session() as session:
        return gates.list_evaluations(session, project, model, version)


def list_results(
    store: MetadataStore, project: str, model: str, version: int, *, limit: int = 100
) -> list[GateResult]:
    """A version's gate verdicts, newest first."""
    with store.session() as session:
        return gates.list_results(session, project, model, version, limit=limit)


def champion_of(store: MetadataStore, project: str, model: str) -> ModelVersion | None:
    """The version ``champion`` points at, ``None`` when the alias is not set."""
    with store.session() as session:
        return gates.champion(session, project, model)


def judge_version(
    store: MetadataStore,
    project: str,
    model: str,
    version: int,
    *,
    actor: str,
    eval_hash: str | None = None,
    score_champion: ChampionScorer | None = None,
    min_delta: float | None = None,
) -> GateResult:
    """Judge ``version`` by the model's policy and record the verdict (``gate.passed`` or
    ``gate.failed``).

    Args:
        eval_hash: which of the version's evaluations to judge; its newest by default.
        min_delta: a margin over the champion the caller requires (a pipeline's gate step):
            the policy's ``min_delta`` is raised to it, never lowered.
        score_champion: scores the champion on the challenger's eval set when it has no
            evaluation there yet (the result is stored as the champion's evaluation).

    Raises:
        ConflictError: the version has no evaluation (evaluate it first), or the champion
            has none on the same eval set and ``score_champion`` was not given.
        NotFoundError: no such model or version.
    """
    policy = get_policy(store, project, model) or DEFAULT_POLICY
    if min_delta is not None and min_delta > policy.min_delta:
        policy = policy.model_copy(update={"min_delta": min_delta})
    mine = get_evaluation(store, project, model, version, eval_hash)
    if mine is None:
        raise ConflictError(
            f"version {version} of model {model!r} has no evaluation"
            + (f" on eval set {eval_hash[:12]}" if eval_hash else "")
            + f": run `loopml models evaluate {model}/{version}` first",
            details={"model": model, "version": version},
        )
    report = mine.report
    champion = champion_of(store, project, model)
    theirs: EvaluationReport | None = None
    if champion is not None and champion.version != version and policy.must_beat:
        theirs = _champions_report(store, project, model, champion, report, score_champion, actor)
    is_champion = champion is not None and champion.version == version
    rules = judge(
        policy,
        report,
        theirs,
        champion_version=None if champion is None else champion.version,
        is_champion=is_champion,
    )
    with store.session() as session:
        return gates.record_result(
            session,
            project,
            model,
            version,
            policy=policy,
            eval_hash=report.eval_hash,
            champion_version=version
            if is_champion
            else (None if theirs is None or champion is None else champion.version),
            rules=rules,
            actor=actor,
        )


def _champions_report(
    store: MetadataStore,
    project: str,
    model: str,
    champion: ModelVersion,
    report: EvaluationReport,
    score_champion: ChampionScorer | None,
    actor: str,
) -> EvaluationReport:
    """The champion's evaluation on the challenger's eval set: stored, or scored now."""
    stored = get_evaluation(store, project, model, champion.version, report.eval_hash)
    if stored is not None:
        return stored.report
    if score_champion is None:
        raise ConflictError(
            f"the champion (version {champion.version}) has no evaluation on the "
            f"challenger's eval set {report.eval_hash[:12]}: evaluate it there first",
            details={"model": model, "champion": champion.version},
        )
    theirs = score_champion(champion, report)
    save_evaluation(store, project, model, champion.version, theirs, actor=actor)
    return theirs
