"""The promotion gate under /api/v1/projects/{project}/models/{model}: the model's policy,
and each version's evaluations and verdicts."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.registry import model_path, version_path
from loopml.core.gate import EvaluationReport, GatePolicy, GateResult, StoredEvaluation
from loopml.faces.context import Actor, Ctx
from loopml.registry import evaluate, gate

router = APIRouter(route_class=StrictJSONRoute, tags=["gate"], responses=ERROR_RESPONSES)
MODEL = "/api/v1/projects/{project}/models/{model}"
VERSION = MODEL + "/versions/{version}"
PROJECT = project_path("The project that owns the model.")
NAME = model_path()
NUMBER = version_path()


class GateRequest(BaseModel):
    """Body of ``POST .../versions/{version}/gate``."""

    model_config = ConfigDict(extra="forbid")

    eval_hash: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{16,64}$",
        description="Which evaluation of the version to judge; its newest by default.",
    )


class EvaluateRequest(BaseModel):
    """Body of ``POST .../versions/{version}/evaluate``."""

    model_config = ConfigDict(extra="forbid")

    dataset: str | None = Field(
        default=None,
        max_length=80,
        pattern=r"^[a-z][a-z0-9_]{0,62}(@([1-9][0-9]{0,8}|latest))?$",
        description="The dataset version whose frozen eval set to score on (`name@3`); by "
        "default the one the version was trained on.",
    )
    target: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The target column; by default the one the version was trained on.",
    )


class EvaluationList(BaseModel):
    """A version's evaluations, newest first."""

    items: list[StoredEvaluation]


class GateResultList(BaseModel):
    """A version's gate verdicts, newest first."""

    items: list[GateResult]


@router.put(MODEL + "/gate-policy")
def set_policy(
    body: GatePolicy, ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME
) -> GatePolicy:
    """Create or replace the model's gate policy."""
    return gate.set_policy(ctx.store, project, model, body, actor=actor)


@router.get(MODEL + "/gate-policy")
def get_policy(ctx: Ctx, project: str = PROJECT, model: str = NAME) -> GatePolicy:
    """The model's gate policy (the default, `must_beat: champion`, when it has none)."""
    return gate.policy_in_force(ctx.store, project, model)


@router.delete(MODEL + "/gate-policy", status_code=204)
def delete_policy(ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME) -> Response:
    """Drop the model's gate policy: the default applies again."""
    gate.delete_policy(ctx.store, project, model, actor=actor)
    return Response(status_code=204)


@router.get(VERSION + "/evaluations")
def list_evaluations(
    ctx: Ctx, project: str = PROJECT, model: str = NAME, version: int = NUMBER
) -> EvaluationList:
    """The version's evaluation reports, one per eval set, newest first."""
    return EvaluationList(items=gate.list_evaluations(ctx.store, project, model, version))


@router.post(VERSION + "/evaluations", status_code=201)
def save_evaluation(
    body: EvaluationReport,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
) -> StoredEvaluation:
    """Store an evaluation report computed elsewhere (replaces one on the same eval set)."""
    return gate.save_evaluation(ctx.store, project, model, version, body, actor=actor)


@router.post(VERSION + "/evaluate", status_code=201)
def evaluate_version(
    body: EvaluateRequest,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
) -> StoredEvaluation:
    """Score the version on a dataset's frozen eval set: metrics and single-row latency of
    the packaged model, stored as its evaluation report."""
    return evaluate.evaluate_version(
        ctx.store,
        ctx.artifacts,
        project,
        model,
        version,
        actor=actor,
        dataset=body.dataset,
        target=body.target,
    )


@router.post(VERSION + "/gate", status_code=201)
def judge(
    body: GateRequest,
    ctx: Ctx,
    actor: Actor,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
) -> GateResult:
    """Judge the version by the model's policy; the verdict is stored and emitted as
    `gate.passed` or `gate.failed`."""
    return evaluate.judge(
        ctx.store, ctx.artifacts, project, model, version, eval_hash=body.eval_hash, actor=actor
    )


@router.get(VERSION + "/gate")
def list_results(
    ctx: Ctx,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
    limit: int = Query(default=20, ge=1, le=1000),
) -> GateResultList:
    """The version's gate verdicts, newest first."""
    return GateResultList(items=gate.list_results(ctx.store, project, model, version, limit=limit))
