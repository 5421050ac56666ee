"""Every route is declared at import and built on first use (``loopml.faces.routes``): each one
must still build, and its declaration must be the one FastAPI's own ``APIRoute`` makes of the
same arguments, since FastAPI builds the included route from it."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import Match

from loopml.api.mlflow import routes as mlflow_routes
from loopml.api.routes.all import MODULES
from loopml.faces.routes import DeclaredRoute
from loopml.portal import pages

# What FastAPI reads of the original route when it includes it (_EffectiveRouteContext),
# and what the permission table and the OpenAPI document read.
DECLARATION = (
    "path",
    "endpoint",
    "methods",
    "name",
    "path_format",
    "param_convertors",
    "unique_id",
    "status_code",
    "tags",
    "dependencies",
    "summary",
    "description",
    "response_description",
    "responses",
    "deprecated",
    "operation_id",
    "response_model",
    "response_model_include",
    "response_model_exclude",
    "response_model_by_alias",
    "response_model_exclude_unset",
    "response_model_exclude_defaults",
    "response_model_exclude_none",
    "include_in_schema",
    "response_class",
    "callbacks",
    "openapi_extra",
    "generate_unique_id_function",
    "strict_content_type",
    "stream_item_type",
    "max_body_size",
    "form_limits",
)


def _modules() -> Iterator[ModuleType]:
    yield from MODULES
    for package in (mlflow_routes, pages):
        for name in dir(package):
            module = getattr(package, name)
            if isinstance(module, ModuleType) and hasattr(module, "router"):
                yield module


def _routes() -> list[DeclaredRoute]:
    found = []
    for module in _modules():
        for route in module.router.routes:
            assert isinstance(route, DeclaredRoute), (module.__name__, route)
            found.append(route)
    return found


ROUTES = _routes()


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    # DefaultPlaceholder compares by identity; the value is what counts.
    return type(left) is type(right) and getattr(left, "value", left) == getattr(
        right, "value", right
    )


def test_every_router_of_the_api_the_mlflow_layer_and_the_portal_is_declared() -> None:
    assert len(ROUTES) > 200


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{sorted(r.methods)[0]} {r.path}")
def test_a_declared_route_is_what_apiroute_makes_and_builds(route: DeclaredRoute) -> None:
    path, endpoint, kwargs = route.__dict__["_declared"]
    eager = APIRoute(path, endpoint, **kwargs)
    differ = [name for name in DECLARATION if not _same(getattr(route, name), getattr(eager, name))]
    assert differ == []
    assert "dependant" not in route.__dict__ or "_source" in route.__dict__
    route.build()
    assert route.dependant.call is endpoint
    assert [p.name for p in route.dependant.query_params] == [
        p.name for p in eager.dependant.query_params
    ]
    assert (route.response_field is None) == (eager.response_field is None)


def test_a_route_moved_to_another_path_shares_its_sources_build() -> None:
    source = next(r for r in mlflow_routes.tracking.router.routes if r.path == "/runs/get")
    assert isinstance(source, DeclaredRoute)
    moved = source.at("/ajax-api/2.0/mlflow/runs/get")
    assert moved.path_format == "/ajax-api/2.0/mlflow/runs/get"
    scope = {"type": "http", "path": moved.path, "method": "GET"}
    assert moved.matches(scope)[0] is Match.FULL
    assert source.matches(scope)[0] is Match.NONE
    assert moved.dependant is source.dependant
    assert moved.app is source.app
    assert source.path == "/runs/get"


def test_an_explicit_no_model_and_a_streamed_answer_are_declared_as_fastapi_does() -> None:
    router = APIRouter(route_class=DeclaredRoute)

    @router.get("/plain", response_model=None)
    def plain() -> dict[str, int]:
        return {}

    @router.get("/annotated")
    def annotated() -> dict[str, int]:
        return {}

    @router.get("/lines")
    def lines() -> Iterator[dict[str, int]]:
        yield {}

    declared = {route.path: route for route in router.routes if isinstance(route, DeclaredRoute)}
    assert declared["/plain"].response_model is None
    assert declared["/annotated"].response_model == dict[str, int]
    assert "app" not in declared["/annotated"].__dict__  # declared only
    assert "app" in declared["/lines"].__dict__  # a generator: built as APIRoute builds it
    eager = APIRoute("/lines", lines)
    assert declared["/lines"].stream_item_type == eager.stream_item_type == dict[str, int]
