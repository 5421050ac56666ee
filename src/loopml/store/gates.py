"""The promotion gate in the metadata DB: policies, evaluation reports and verdicts.

A policy belongs to a registered model; evaluations and verdicts to a version. A version's
evaluation on one eval set (``eval_hash``) is replaced when it is evaluated again; verdicts
accumulate, and the newest one decides whether the version may be promoted (read here by
``latest_verdict``, judged by ``core.promotion``). Every change appends its event in the same
transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError
from loopml.core.gate import (
    PROTECTED_ALIAS,
    EvaluationReport,
    GatePolicy,
    GateResult,
    RuleOutcome,
    StoredEvaluation,
    verdict_summary,
)
from loopml.core.promotion import Verdict
from loopml.core.registry import ModelVersion
from loopml.store import events
from loopml.store._checks import check_actor, check_limit
from loopml.store._registry import model_row, version_row, version_to_domain
from loopml.store.orm import (
    GatePolicyRow,
    GateResultRow,
    ModelAliasRow,
    ModelEvaluationRow,
    ModelVersionRow,
    RegisteredModelRow,
)


def _event(
    session: Session, type: str, project: str, model: str, actor: str, **payload: Any
) -> None:
    events.append(
        session,
        type=type,
        subject=model,
        project=project,
        payload={"model": model, **payload},
        actor=actor,
    )


def set_policy(
    session: Session, project: str, model: str, policy: GatePolicy, *, actor: str
) -> GatePolicy:
    """Create or replace the model's gate policy (emits ``model.gate_policy.set``)."""
    check_actor(actor)
    row = model_row(session, project, model, lock=True)
    data = policy.model_dump(mode="json")
    found = session.scalar(select(GatePolicyRow).where(GatePolicyRow.model_id == row.id))
    if found is None:
        session.add(GatePolicyRow(model_id=row.id, policy=data, actor=actor))
    else:
        found.policy = data
        found.actor = actor
    session.flush()
    _event(session, "model.gate_policy.set", project, model, actor, policy=data)
    return policy


def get_policy(session: Session, project: str, model: str) -> GatePolicy | None:
    """The model's gate policy, ``None`` when it has none."""
    row = model_row(session, project, model)
    found = session.scalar(select(GatePolicyRow.policy).where(GatePolicyRow.model_id == row.id))
    return None if found is None else GatePolicy.model_validate(found)


def delete_policy(session: Session, project: str, model: str, *, actor: str) -> None:
    """Remove the model's gate policy (emits ``model.gate_policy.removed``)."""
    check_actor(actor)
    row = model_row(session, project, model, lock=True)
    deleted = session.execute(sql_delete(GatePolicyRow).where(GatePolicyRow.model_id == row.id))
    if not getattr(deleted, "rowcount", 0):
        raise NotFoundError(
            f"model {model!r} has no gate policy", details={"project": project, "model": model}
        )
    _event(session, "model.gate_policy.removed", project, model, actor)


def champion(session: Session, project: str, model: str) -> ModelVersion | None:
    """The version the protected alias (``champion``) points at, ``None`` when unset."""
    row = model_row(session, project, model)
    alias = session.get(ModelAliasRow, (row.id, PROTECTED_ALIAS))
    if alias is None:
        return None
    target = session.get(ModelVersionRow, alias.version_id)
    return None if target is None else version_to_domain(session, target, model, project)


def _version(
    session: Session, project: str, model: str, version: int
) -> tuple[RegisteredModelRow, ModelVersionRow]:
    mrow = model_row(session, project, model)
    return mrow, version_row(session, project, mrow, version)


def _stored(model: str, version: int, row: ModelEvaluationRow) -> StoredEvaluation:
    return StoredEvaluation(
        model=model,
        version=version,
        report=EvaluationReport.model_validate(row.report),
        actor=row.actor,
        created_at=row.updated_at,
    )


def save_evaluation(
    session: Session,
    project: str,
    model: str,
    version: int,
    report: EvaluationReport,
    *,
    actor: str,
) -> StoredEvaluation:
    """Store ``report`` as the version's evaluation on its eval set (replacing an earlier one
    on the same set) and emit ``model.version.evaluated``."""
    check_actor(actor)
    mrow, vrow = _version(session, project, model, version)
    data = report.model_dump(mode="json")
    found = session.scalar(
        select(ModelEvaluationRow).where(
            ModelEvaluationRow.version_id == vrow.id,
            ModelEvaluationRow.eval_hash == report.eval_hash,
        )
    )
    if found is None:
        found = ModelEvaluationRow(
            project_id=mrow.project_id,
            version_id=vrow.id,
            eval_hash=report.eval_hash,
            report=data,
            actor=actor,
        )
        session.add(found)
    else:
        found.report = data
        found.actor = actor
    session.flush()
    _event(
        session,
        "model.version.evaluated",
        project,
        model,
        actor,
        version=version,
        eval_hash=report.eval_hash,
        metrics=report.metrics,
    )
    return _stored(model, version, found)


def get_evaluation(
    session: Session, project: str, model: str, version: int, eval_hash: str | None = None
) -> StoredEvaluation | None:
    """The version's evaluation on ``eval_hash``, or its newest one when ``None``."""
    _, vrow = _version(session, project, model, version)
    query = select(ModelEvaluationRow).where(ModelEvaluationRow.version_id == vrow.id)
    if eval_hash is not None:
        query = query.where(ModelEvaluationRow.eval_hash == eval_hash)
    row = session.scalar(
        query.order_by(ModelEvaluationRow.updated_at.desc(), ModelEvaluationRow.id.desc())
    )
    return None if row is None else _stored(model, version, row)


def list_evaluations(
    session: Session, project: str, model: str, version: int
) -> list[StoredEvaluation]:
    """Every evaluation of the version, newest first."""
    _, vrow = _version(session, project, model, version)
    rows = session.scalars(
        select(ModelEvaluationRow)
        .where(ModelEvaluationRow.version_id == vrow.id)
        .order_by(ModelEvaluationRow.updated_at.desc(), ModelEvaluationRow.id.desc())
    )
    return [_stored(model, version, row) for row in rows]


def _result(project: str, model: str, version: int, row: GateResultRow) -> GateResult:
    return GateResult(
        id=row.id,
        project=project,
        model=model,
        version=version,
        passed=row.passed,
        eval_hash=row.eval_hash,
        champion_version=row.champion_version,
        rules=[RuleOutcome.model_validate(r) for r in row.rules],
        policy=GatePolicy.model_validate(row.policy),
        actor=row.actor,
        created_at=row.created_at,
    )


def record_result(
    session: Session,
    project: str,
    model: str,
    version: int,
    *,
    policy: GatePolicy,
    eval_hash: str,
    champion_version: int | None,
    rules: list[RuleOutcome],
    actor: str,
) -> GateResult:
    """Store a verdict (passed when every rule passed) and emit ``gate.passed`` or
    ``gate.failed`` with each rule's outcome."""
    check_actor(actor)
    mrow, vrow = _version(session, project, model, version)
    passed = all(rule.passed for rule in rules)
    row = GateResultRow(
        project_id=mrow.project_id,
        version_id=vrow.id,
        passed=passed,
        eval_hash=eval_hash,
        champion_version=champion_version,
        rules=[r.model_dump(mode="json") for r in rules],
        policy=policy.model_dump(mode="json"),
        actor=actor,
    )
    session.add(row)
    session.flush()
    _event(
        session,
        "gate.passed" if passed else "gate.failed",
        project,
        model,
        actor,
        version=version,
        gate_result_id=row.id,
        eval_hash=eval_hash,
        champion_version=champion_version,
        rules=row.rules,
        summary=verdict_summary(passed, rules, policy),
    )
    return _result(project, model, version, row)


def latest_result(session: Session, project: str, model: str, version: int) -> GateResult | None:
    """The version's newest verdict, ``None`` when the gate never judged it."""
    results = list_results(session, project, model, version, limit=1)
    return results[0] if results else None


def latest_verdict(session: Session, version_id: str) -> Verdict | None:
    """The newest verdict of a version, by its id (``ModelVersion.id``), as promotion reads
    it; ``None`` when the gate never judged it."""
    row = session.scalar(
        select(GateResultRow)
        .where(GateResultRow.version_id == version_id)
        .order_by(GateResultRow.created_at.desc(), GateResultRow.id.desc())
        .limit(1)
    )
    return None if row is None else Verdict(id=row.id, passed=row.passed, rules=tuple(row.rules))


def list_results(
    session: Session, project: str, model: str, version: int, *, limit: int = 100
) -> list[GateResult]:
    """The version's verdicts, newest first."""
    check_limit(limit)
    _, vrow = _version(session, project, model, version)
    rows = session.scalars(
        select(GateResultRow)
        .where(GateResultRow.version_id == vrow.id)
        .order_by(GateResultRow.created_at.desc(), GateResultRow.id.desc())
        .limit(limit)
    )
    return [_result(project, model, version, row) for row in rows]
