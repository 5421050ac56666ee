"""A FastAPI route that builds its request machinery only when something asks for it.

FastAPI's ``APIRoute`` builds, when its decorator runs at import, a pydantic adapter for each
parameter and answer (about 2,500 for the API's 173 routes: 0.7 s of CPU, a third of what
``loopml up`` spent before health answered). The API's routers are then included in the app,
and an included route is built again, with the app's dependencies, by FastAPI on the first
request (``_EffectiveRouteContext``, FastAPI 0.16x; earlier versions copied each route at
``include_router``). Either way the route built at import is read only for its declaration
(path, methods, endpoint, answer model, tags ...), which costs nothing to keep.

``DeclaredRoute`` keeps that declaration and builds the rest (``dependant``, the body and
answer fields, the ASGI ``app``) the first time one of them is read, by running
``APIRoute.__init__`` with the arguments it was given. A route used directly, not through an
include, is built on its first request; ``tests/unit/api/test_routes_build.py`` builds every
route so that a wrong annotation fails the suite, not a user's first request.
"""

from __future__ import annotations

import copy
import inspect
import threading
from typing import Any, Self

from fastapi._compat import lenient_issubclass
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id
from starlette.responses import Response
from starlette.routing import compile_path

# What APIRoute.__init__ computes that costs pydantic adapters, built on first read.
_BUILT = frozenset(
    {
        "app",
        "dependant",
        "body_field",
        "response_field",
        "response_fields",
        "stream_item_field",
        "_embed_body_fields",
        "is_sse_stream",
        "is_json_stream",
        "form_limits",
    }
)
_BUILD_LOCK = threading.Lock()


class DeclaredRoute(APIRoute):
    """An ``APIRoute`` whose adapters and handler are built on first use (see the module).

    A generator endpoint (a streamed answer) or one with form limits is built at once, as
    ``APIRoute`` builds it: their declaration depends on more of FastAPI's rules."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        self.__dict__["_declared"] = (path, endpoint, kwargs)
        if kwargs.get("form_limits") is not None or _is_generator(endpoint):
            self.build()
        else:
            self._declare(path, endpoint, kwargs)

    def _declare(self, path: str, endpoint: Any, kwargs: dict[str, Any]) -> None:
        # The declaration only, as APIRoute's _populate_api_route_state sets it.
        self.path = path
        self.endpoint = endpoint
        self.form_limits = {}  # no limits given: FastAPI's own default
        self.stream_item_type = None
        self.methods = {method.upper() for method in kwargs.get("methods") or ["GET"]}
        name = kwargs.get("name")
        self.name = endpoint.__name__ if name is None else name
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        for key, default in _DECLARATION_DEFAULTS.items():
            setattr(self, key, kwargs.get(key, default))
        self.tags = kwargs.get("tags") or []
        self.responses = kwargs.get("responses") or {}
        self.dependencies = list(kwargs.get("dependencies") or [])
        status_code = kwargs.get("status_code")
        self.status_code = int(status_code) if status_code is not None else None
        description = kwargs.get("description") or inspect.cleandoc(endpoint.__doc__ or "")
        self.description = description.split("\f")[0].strip()
        make_id = self.generate_unique_id_function
        if isinstance(make_id, DefaultPlaceholder):
            make_id = make_id.value
        self.unique_id = self.operation_id or make_id(self)
        given = kwargs.get("response_model", DefaultPlaceholder(None))
        self.response_model = _answer_model(endpoint, given)

    def __getattr__(self, name: str) -> Any:
        # Called only for an attribute not set yet: build the route, then read it.
        if name not in _BUILT or self.__dict__.get("_building"):
            raise AttributeError(name)
        self.build()
        return self.__dict__[name]

    def build(self) -> None:
        """Build the route as ``APIRoute`` does at once (idempotent, thread-safe)."""
        source = self.__dict__.get("_source")
        if source is not None:
            # A route moved to another path shares its source's analysis and handler.
            source.build()
            with _BUILD_LOCK:
                for name in _BUILT:
                    self.__dict__.setdefault(name, source.__dict__[name])
            return
        with _BUILD_LOCK:
            if "app" in self.__dict__:
                return
            path, endpoint, kwargs = self.__dict__["_declared"]
            self.__dict__["_building"] = True
            try:
                APIRoute.__init__(self, path, endpoint, **kwargs)
            finally:
                self.__dict__["_building"] = False

    def at(self, path: str) -> Self:
        """The same route matching ``path`` instead: its endpoint's analysis does not depend
        on the path (so no parameter may be named after a part that differs), and is built
        once for both."""
        moved = copy.copy(self)
        moved.__dict__["_source"] = self.__dict__.get("_source", self)
        moved.path = path
        moved.path_regex, moved.path_format, moved.param_convertors = compile_path(path)
        return moved


_DECLARATION_DEFAULTS: dict[str, Any] = {
    "summary": None,
    "response_description": "Successful Response",
    "deprecated": None,
    "operation_id": None,
    "response_model_include": None,
    "response_model_exclude": None,
    "response_model_by_alias": True,
    "response_model_exclude_unset": False,
    "response_model_exclude_defaults": False,
    "response_model_exclude_none": False,
    "include_in_schema": True,
    "response_class": DefaultPlaceholder(JSONResponse),
    "dependency_overrides_provider": None,
    "callbacks": None,
    "openapi_extra": None,
    "generate_unique_id_function": DefaultPlaceholder(generate_unique_id),
    "strict_content_type": DefaultPlaceholder(True),
    "max_body_size": None,
}


def _answer_model(endpoint: Any, given: Any) -> Any:
    """The route's answer model: the one given (``None`` too), else the endpoint's return
    annotation unless that is a ``Response``."""
    if not isinstance(given, DefaultPlaceholder):
        return given
    annotation = get_typed_return_annotation(endpoint)
    return None if lenient_issubclass(annotation, Response) else annotation


def _is_generator(endpoint: Any) -> bool:
    # A callable object is a generator by its __call__, as FastAPI reads it.
    call = endpoint if inspect.isroutine(endpoint) else type(endpoint).__call__
    return inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call)
