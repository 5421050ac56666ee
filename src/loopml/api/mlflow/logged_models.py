"""MLflow 3's ``/logged-models`` over loopml: models MLflow clients log are recorded in
``train.tracking.mlflow_records`` (their files under their own folder, never loaded by the server);
packages loopml itself logged for a run are listed beside them, READY and named by their
folder, so ``mlflow.register_model("runs:/<run>/<folder>")`` from an MLflow 3 client finds
them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from loopml.api.mlflow import convert, schemas
from loopml.api.mlflow.tracking import (
    DEFAULT_EXPERIMENT_ID,
    MAX_PAGE,
    experiment_id_of,
    experiment_of,
)
from loopml.core import layout
from loopml.core.errors import ValidationError
from loopml.core.mlflow_models import MlflowModelStatus
from loopml.faces.context import AppContext
from loopml.train.tracking import mlflow_records as records

log = logging.getLogger("loopml.api.mlflow")

_STATUS: dict[str, MlflowModelStatus] = {
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
    "LOGGED_MODEL_PENDING": "PENDING",
}
_CLAUSE = re.compile(r"""^\s*(name|source_run_id)\s*=\s*(['"])(.*?)\2\s*$""", re.IGNORECASE)


def create(
    ctx: AppContext, project: str, body: schemas.LoggedModelCreate, actor: str
) -> dict[str, Any]:
    """``POST /logged-models``: a PENDING model whose files the client uploads next."""
    experiment = experiment_of(ctx, project, body.experiment_id or DEFAULT_EXPERIMENT_ID, actor)
    model = ctx.mlflow.create_logged_model(
        project,
        experiment.id,
        name=body.name or f"model-{experiment.id[:8]}",
        model_type=body.model_type or "",
        source_run_id=body.source_run_id or None,
        params={p.key: p.value for p in body.params},
        tags={t.key: t.value for t in body.tags},
        actor=actor,
    )
    return {"model": convert.mlflow_model(model)}


def get(ctx: AppContext, project: str, model_id: str) -> dict[str, Any]:
    """``GET /logged-models/{id}``: an MLflow model, or a package loopml logged."""
    found = ctx.mlflow.logged_model_or_package(project, model_id)
    if isinstance(found, records.PackageView):
        return {"model": convert.loopml_package(found.package, found.experiment_id)}
    return {"model": convert.mlflow_model(found)}


def finalize(ctx: AppContext, project: str, model_id: str, status: str) -> dict[str, Any]:
    """``PATCH /logged-models/{id}``: READY or UPLOAD_FAILED."""
    settled = _STATUS.get(status)
    if settled is None or settled == "PENDING":
        raise ValidationError(
            f"invalid status {status[:40]!r}: expected LOGGED_MODEL_READY or "
            "LOGGED_MODEL_UPLOAD_FAILED"
        )
    model = ctx.mlflow.finalize_logged_model(project, model_id, settled)
    return {"model": convert.mlflow_model(model)}


def update(
    ctx: AppContext,
    project: str,
    model_id: str,
    *,
    params: list[schemas.KeyValue] | None = None,
    tags: list[schemas.KeyValue] | None = None,
    remove_tag: str | None = None,
) -> dict[str, Any]:
    """Params (``POST .../params``), tags (``PATCH .../tags``), a tag's removal."""
    ctx.mlflow.update_logged_model(
        project,
        model_id,
        params={p.key: p.value for p in params or []},
        tags={t.key: t.value for t in tags or []},
        remove_tag=remove_tag,
    )
    return {}


def delete(ctx: AppContext, project: str, model_id: str, actor: str) -> dict[str, Any]:
    """``DELETE /logged-models/{id}``: the record, then its files."""
    project_id = ctx.mlflow.delete_logged_model(project, model_id, actor=actor)
    try:
        ctx.artifacts.delete_prefix(layout.mlflow_model_prefix(project_id, model_id))
    except Exception:
        log.exception("logged model %s deleted, but freeing its files failed", model_id)
    return {}


def _filters(text: str | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", text or "", flags=re.IGNORECASE):
        if not clause.strip():
            continue
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValidationError(
                f"unsupported logged model filter {(text or '')[:100]!r}: only name = '...' "
                "and source_run_id = '...' joined by AND are supported"
            )
        found[match.group(1).lower()] = match.group(3)
    return found


def search(ctx: AppContext, project: str, body: schemas.LoggedModelSearch) -> dict[str, Any]:
    """``POST /logged-models/search``: MLflow models newest first, then (on the first page)
    the packages loopml logged for runs of these experiments, filtered alike."""
    wanted = _filters(body.filter)
    ids = [i for i in (experiment_id_of(ctx, project, e) for e in body.experiment_ids) if i]
    if body.experiment_ids and not ids:
        return {"models": []}
    page, packages = ctx.mlflow.search_logged_models(
        project,
        experiment_ids=ids,
        name=wanted.get("name"),
        source_run_id=wanted.get("source_run_id"),
        limit=min(body.max_results, MAX_PAGE),
        cursor=body.page_token or None,
        with_packages=body.page_token is None,
    )
    found = [convert.mlflow_model(m) for m in page.items]
    found += [convert.loopml_package(p.package, p.experiment_id) for p in packages]
    answer: dict[str, Any] = {"models": found}
    if page.next_cursor:
        answer["next_page_token"] = page.next_cursor
    return answer


def log_outputs(ctx: AppContext, project: str, body: schemas.LogOutputs) -> dict[str, Any]:
    """``runs/outputs``: the run produced these models."""
    ctx.mlflow.set_source_runs(project, [item.model_id for item in body.models], body.id)
    return {}
