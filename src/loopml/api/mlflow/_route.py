"""What every MLflow route shares: the error shape, the project, the caller.

``MlflowRoute`` answers any loopml error or unparsable request in MLflow's error shape, so
the app-wide handlers (loopml's own shape) never see an MLflow route's errors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from loopml.api.mlflow.errors import from_loopml, from_validation, mlflow_error
from loopml.core.errors import LoopmlError
from loopml.core.names import validate_project_name
from loopml.faces.context import AppContext, get_actor, get_context
from loopml.faces.routes import DeclaredRoute

log = logging.getLogger("loopml.api.mlflow")


class MlflowRoute(DeclaredRoute):
    """A route whose errors are MLflow's ``{"error_code", "message"}``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoopmlError as exc:
                return from_loopml(exc)
            except RequestValidationError as exc:
                return from_validation(exc)
            except Exception:
                log.exception("internal error on %s %s", request.method, request.url.path)
                return mlflow_error("INTERNAL_ERROR", "internal error; see the server log")

        return route


def get_project(request: Request) -> str:
    """The loopml project an MLflow request acts in: the ``{project}`` of a per-project
    tracking URI (``/mlflow/projects/{project}/api/2.0/mlflow/...``), or at the root paths
    the one the ``mlflow.project`` setting names (MLflow has no projects)."""
    project = request.path_params.get("project")
    if project is None:
        ctx: AppContext = get_context(request)
        return ctx.settings.mlflow.project
    return validate_project_name(project)


def get_mlflow_actor(request: Request) -> str:
    """Who the MLflow client is.

    The seam for authentication: MLflow clients send ``MLFLOW_TRACKING_TOKEN`` as
    ``Authorization: Bearer <token>`` (and ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` as
    Basic). The permission check (``web.authz.enforce``) reads that header, as for any
    loopml route, so MLflow clients are authenticated exactly like loopml's.
    """
    return get_actor(request)


Project = Annotated[str, Depends(get_project)]
MlflowActor = Annotated[str, Depends(get_mlflow_actor)]
