"""MLflow's REST API over loopml's own tracking, artifacts and registry.

``install(app)`` mounts one set of handlers twice, under ``/api/2.0/mlflow`` (MLflow's
client) and ``/ajax-api/2.0/mlflow`` (MLflow's web UI), and the artifact proxy under
``/api/2.0/mlflow-artifacts``. The routes are left out of loopml's OpenAPI document:
MLflow's protos specify them. See docs/mlflow.md for what is supported and how it maps.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, params

from loopml.api.mlflow import routes as _routes
from loopml.api.mlflow._route import MlflowRoute
from loopml.api.mlflow.artifacts import is_upload_path as is_upload_path
from loopml.api.mlflow.errors import MlflowApiError

PREFIXES = ("/api/2.0", "/ajax-api/2.0")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _unknown_endpoint(path: str) -> None:
    raise MlflowApiError(
        "ENDPOINT_NOT_FOUND",
        f"no MLflow endpoint {path[:120]!r} in loopml; see docs/mlflow.md for what is supported",
    )


def _fallback() -> APIRouter:
    router = APIRouter(route_class=MlflowRoute)
    router.add_api_route("/{path:path}", _unknown_endpoint, methods=_METHODS)
    return router


def install(app: FastAPI, dependencies: Sequence[params.Depends] | None = None) -> None:
    """Mount the MLflow API on ``app`` (both prefixes; unknown MLflow paths answer
    ``ENDPOINT_NOT_FOUND`` in MLflow's shape), every route behind ``dependencies`` (the
    permission check)."""
    deps = list(dependencies or [])
    for prefix in PREFIXES:
        for module in (_routes.tracking, _routes.registry, _routes.logged_models):
            app.include_router(
                module.router, prefix=f"{prefix}/mlflow", include_in_schema=False, dependencies=deps
            )
        app.include_router(
            _fallback(), prefix=f"{prefix}/mlflow", include_in_schema=False, dependencies=deps
        )
        app.include_router(
            _routes.artifacts.router,
            prefix=f"{prefix}/mlflow-artifacts",
            include_in_schema=False,
            dependencies=deps,
        )
        app.include_router(
            _fallback(),
            prefix=f"{prefix}/mlflow-artifacts",
            include_in_schema=False,
            dependencies=deps,
        )
