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


def _mounted(source: APIRouter, prefix: str, deps: list[params.Depends]) -> list[MlflowRoute]:
    """``source``'s routes as new routes under ``prefix``.

    A router included with a prefix keeps its routes' own (unprefixed) paths, and the
    permission check looks a route's rule up by its path: so each mount gets routes of its
    own whose path is the whole template (``/mlflow/projects/{project}/api/2.0/mlflow/...``).
    """
    routes: list[MlflowRoute] = []
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


def _moved(route: MlflowRoute, old_prefix: str, new_prefix: str) -> MlflowRoute:
    """``route``, mounted at ``old_prefix``, as the same route at ``new_prefix``.

    Only the path it matches differs: the analysis of its endpoint and dependencies, which
    is most of building a route, does not depend on the prefix, as none of the endpoints
    takes a parameter named after the prefix's ``{project}`` (the project is a dependency
    that reads the request's path parameters), so the handler is shared.
    """
    assert route.path.startswith(old_prefix), (route.path, old_prefix)
    return route.at(new_prefix + route.path.removeprefix(old_prefix))


# The routes built for a set of dependencies: they hold no state of an app's, so every app
# of the process shares them (tests build hundreds of apps). Each route is analysed once and
# moved under the other three prefixes: building all four mounts' 252 routes one by one took
# about 0.8 s of a `loopml up`'s CPU.
_BUILT: dict[tuple[object, ...], list[BaseRoute]] = {}


def _built(deps: list[params.Depends]) -> list[BaseRoute]:
    key = tuple(d.dependency for d in deps)
    routes = _BUILT.get(key)
    if routes is not None:
        return routes
    first = PREFIXES[0]  # at the root
    served: list[MlflowRoute] = []
    for router, at in (
        (_routes.tracking.router, "/mlflow"),
        (_routes.registry.router, "/mlflow"),
        (_routes.logged_models.router, "/mlflow"),
        (_fallback(), "/mlflow"),
        (_routes.artifacts.router, "/mlflow-artifacts"),
        (_fallback(), "/mlflow-artifacts"),
    ):
        served += _mounted(router, first + at, deps)
    unserved = _mounted(_fallback(), UNSERVED_PREFIXES[0] + "/mlflow", deps)
    built: list[BaseRoute] = []
    for root in ("", PROJECT_ROOT):
        for prefix in PREFIXES:
            built += [_moved(route, first, root + prefix) for route in served]
        for prefix in UNSERVED_PREFIXES:
            built += [_moved(route, UNSERVED_PREFIXES[0], root + prefix) for route in unserved]
    _BUILT[key] = built
    return built


def install(app: FastAPI, dependencies: Sequence[params.Depends] | None = None) -> None:
    """Mount the MLflow API on ``app`` (both prefixes, at the root and under
    ``PROJECT_ROOT``; unknown MLflow paths answer ``ENDPOINT_NOT_FOUND`` in MLflow's shape),
    every route behind ``dependencies`` (the permission check)."""
    app.router.routes.extend(_built(list(dependencies or [])))
