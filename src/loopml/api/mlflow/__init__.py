"""MLflow's REST API over loopml's own tracking, artifacts and registry.

``install(app)`` mounts one set of handlers twice, under ``/api/2.0/mlflow`` (MLflow's
client) and ``/ajax-api/2.0/mlflow`` (MLflow's web UI), and the artifact proxy under
``/api/2.0/mlflow-artifacts``; all of them at the root, acting in the project the
``mlflow.project`` setting names, and again under ``/mlflow/projects/{project}`` (a tracking
URI per project: MLflow's client appends its own paths to the URI). The routes are left out
of loopml's OpenAPI document: MLflow's protos specify them. See docs/mlflow.md for what is
supported and how it maps.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI, params
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from loopml.api.mlflow import routes as _routes
from loopml.api.mlflow._route import MlflowRoute
from loopml.api.mlflow.artifacts import is_upload_path as is_upload_path
from loopml.api.mlflow.errors import MlflowApiError
from loopml.core.mlflow_models import PROJECT_ROOT

PREFIXES = ("/api/2.0", "/ajax-api/2.0")
# MLflow 3's own paths (traces, evaluation datasets, workspaces, MCP servers): none is
# served, each answers ENDPOINT_NOT_FOUND in MLflow's shape, which its client raises as such.
UNSERVED_PREFIXES = ("/api/3.0", "/ajax-api/3.0")
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


def _mounted(source: APIRouter, prefix: str, deps: list[params.Depends]) -> list[BaseRoute]:
    """``source``'s routes as new routes under ``prefix``.

    A router included with a prefix keeps its routes' own (unprefixed) paths, and the
    permission check looks a route's rule up by its path: so each mount gets routes of its
    own whose path is the whole template (``/mlflow/projects/{project}/api/2.0/mlflow/...``).
    """
    routes: list[BaseRoute] = []
    for route in source.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"not an API route: {route!r}")
        routes.append(
            MlflowRoute(
                prefix + route.path,
                route.endpoint,
                methods=sorted(route.methods or ()),
                name=route.name,
                include_in_schema=False,
                dependencies=deps,
            )
        )
    return routes


# The routes built for a set of dependencies: building them (244 routes, each with its
# dependency analysis) took about 0.35 s, once per app; they hold no state of an app's, so
# every app of the process shares them (tests build hundreds of apps).
_BUILT: dict[tuple[object, ...], list[BaseRoute]] = {}


def _built(deps: list[params.Depends]) -> list[BaseRoute]:
    key = tuple(d.dependency for d in deps)
    routes = _BUILT.get(key)
    if routes is None:
        routes = []
        for root in ("", PROJECT_ROOT):
            for prefix in PREFIXES:
                tracking = f"{root}{prefix}/mlflow"
                artifacts = f"{root}{prefix}/mlflow-artifacts"
                for router, at in (
                    (_routes.tracking.router, tracking),
                    (_routes.registry.router, tracking),
                    (_routes.logged_models.router, tracking),
                    (_fallback(), tracking),
                    (_routes.artifacts.router, artifacts),
                    (_fallback(), artifacts),
                ):
                    routes += _mounted(router, at, deps)
            for prefix in UNSERVED_PREFIXES:
                routes += _mounted(_fallback(), f"{root}{prefix}/mlflow", deps)
        _BUILT[key] = routes
    return routes


def install(app: FastAPI, dependencies: Sequence[params.Depends] | None = None) -> None:
    """Mount the MLflow API on ``app`` (both prefixes, at the root and under
    ``PROJECT_ROOT``; unknown MLflow paths answer ``ENDPOINT_NOT_FOUND`` in MLflow's shape),
    every route behind ``dependencies`` (the permission check)."""
    app.router.routes.extend(_built(list(dependencies or [])))
