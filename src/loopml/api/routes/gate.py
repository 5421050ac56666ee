"""The promotion gate under /api/v1/projects/{project}/models/{model}: the model's policy,
and each version's evaluations and verdicts."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from loopml.api.routes._strict_json import StrictJSONRoute
from loopml.api.schemas.common import ERROR_RESPONSES, project_path
from loopml.api.schemas.registry import model_path, version_path
from loopml.api.services import gate as svc
from loopml.core.gate import EvaluationReport, GatePolicy, GateResult, StoredEvaluation
from loopml.web.context import Actor, Ctx

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
    return svc.set_policy(ctx, project, model, body, actor)


@router.get(MODEL + "/gate-policy")
def get_policy(ctx: Ctx, project: str = PROJECT, model: str = NAME) -> GatePolicy:
    """The model's gate policy (the default, `must_beat: champion`, when it has none)."""
    return svc.get_policy(ctx, project, model)


@router.delete(MODEL + "/gate-policy", status_code=204)
def delete_policy(ctx: Ctx, actor: Actor, project: str = PROJECT, model: str = NAME) -> Response:
    """Drop the model's gate policy: the default applies again."""
    svc.delete_policy(ctx, project, model, actor)
    return Response(status_code=204)


@router.get(VERSION + "/evaluations")
def list_evaluations(
    ctx: Ctx, project: str = PROJECT, model: str = NAME, version: int = NUMBER
) -> EvaluationList:
    """The version's evaluation reports, one per eval set, newest first."""
    return EvaluationList(items=svc.list_evaluations(ctx, project, model, version))


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
    return svc.save_evaluation(ctx, project, model, version, body, actor)


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
    return svc.evaluate_version(ctx, project, model, version, body.dataset, body.target, actor)


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
    return svc.judge(ctx, project, model, version, body.eval_hash, actor)


@router.get(VERSION + "/gate")
def list_results(
    ctx: Ctx,
    project: str = PROJECT,
    model: str = NAME,
    version: int = NUMBER,
    limit: int = Query(default=20, ge=1, le=1000),
) -> GateResultList:
    """The version's gate verdicts, newest first."""
    return GateResultList(items=svc.list_results(ctx, project, model, version, limit))
