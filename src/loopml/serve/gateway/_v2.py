"""The gateway's Open Inference Protocol (KServe V2) paths: the root as a V2 server of its own
(``/v2``, ``/v2/health/*``, every default-project deployment by its name or by the model it
serves) and ``/deployments/{name}/v2/...``; requests are checked here, then forwarded by the
gateway to a replica with the model rewritten to the one that replica serves."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from loopml._version import __version__
from loopml.core.deployments import DEPLOYMENT_NAME_PATTERN
from loopml.core.errors import NotFoundError
from loopml.core.names import DEFAULT_PROJECT
from loopml.serve.gateway._requests import (
    check_method,
    has_ready,
    json_response,
    named,
    no_deployment,
    state,
)
from loopml.serve.gateway._upstream import UpstreamClient
from loopml.serve.gateway.routing import Backend, Routes, RouteSource

Upstream = Callable[[Backend], str]
"""The path to call on a replica (it depends on the model the replica serves)."""


class V2Handlers:
    """The V2 handlers of ``Gateway`` (which provides routing and forwarding)."""

    source: RouteSource
    _client: UpstreamClient | None

    def _routes(self, project: str, name: str) -> Routes:
        raise NotImplementedError

    async def _forward(
        self,
        request: Request,
        project: str,
        name: str,
        upstream: Upstream,
        pin: int | None,
        inference: bool,
    ) -> Response:
        raise NotImplementedError

    async def _deployment_v2(self, request: Request) -> Response:
        project, name = named(request)
        return await self._v2(request, project, name, request.path_params.get("rest", ""))

    async def _server_v2(self, request: Request) -> Response:
        """The gateway as a V2 server: ``/v2`` (metadata), ``/v2/health/live`` (the process
        answers) and ``/v2/health/ready`` (its pool is open)."""
        check_method(request, "GET")
        probe = request.path_params.get("probe")
        if probe is None:
            return json_response({"name": "loopml", "version": __version__, "extensions": []})
        if probe == "live":
            return json_response({"live": True})
        if probe == "ready":
            ready = self._client is not None
            return json_response({"ready": ready}, 200 if ready else 503)
        raise NotFoundError(f"no V2 route /v2/health/{probe[:40]}; use live or ready")

    async def _root_v2(self, request: Request) -> Response:
        name = self._root_deployment(request.path_params["name"])
        state(request.scope)["gateway_key"] = (DEFAULT_PROJECT, name)
        rest = request.url.path[len("/v2/") :]
        return await self._v2(request, DEFAULT_PROJECT, name, rest)

    def _root_deployment(self, name: str) -> str:
        """The default project's deployment a root V2 path names: by its own name, else the
        one deployment serving a model of that name."""
        if DEPLOYMENT_NAME_PATTERN.fullmatch(name) and self.source.routes(DEFAULT_PROJECT, name):
            return name
        serving = sorted(
            routes.name
            for routes in self.source.all_routes()
            if routes.project == DEFAULT_PROJECT and any(r.model == name for r in routes.revisions)
        )
        if len(serving) == 1:
            return serving[0]
        if serving:
            raise NotFoundError(
                f"model {name[:100]!r} is served by deployments {serving}: name the deployment "
                "instead",
                details={"model": name[:100], "deployments": serving},
            )
        raise no_deployment(DEFAULT_PROJECT, name)

    async def _v2(self, request: Request, project: str, name: str, rest: str) -> Response:
        parts = [p for p in rest.split("/") if p]
        if parts in ([], ["health", "live"], ["health", "ready"]):
            check_method(request, "GET")
            routes = self._routes(project, name)
            if not parts:
                return await self._forward(request, project, name, lambda _: "/v2", None, False)
            if parts[1] == "live":
                return json_response({"live": True})
            ready = has_ready(routes)
            return json_response({"ready": ready}, 200 if ready else 503)
        if len(parts) < 2 or parts[0] != "models":
            raise NotFoundError(
                f"no V2 route {'/'.join(parts)[:200]!r}; see /v2/models/{{name}}[/infer]"
            )
        return await self._model_v2(request, project, name, parts[1], parts[2:])

    async def _model_v2(
        self, request: Request, project: str, name: str, model: str, tail: list[str]
    ) -> Response:
        pin: int | None = None
        if tail[:1] == ["versions"]:
            if len(tail) < 2 or not tail[1].isdigit() or len(tail[1]) > 9:
                raise NotFoundError(f"no V2 route for version {'/'.join(tail)[:40]!r}")
            pin = int(tail[1])
            tail = tail[2:]
        if tail not in ([], ["ready"], ["infer"]):
            raise NotFoundError(f"no V2 route {'/'.join(tail)[:100]!r} under /v2/models/{model}")
        check_method(request, "POST" if tail == ["infer"] else "GET")
        routes = self._routes(project, name)
        served = {name} | {r.model for r in routes.revisions}
        if model not in served:
            raise NotFoundError(
                f"deployment {name!r} does not serve model {model[:100]!r}; name it "
                f"{sorted(served)}",
                details={"deployment": name, "models": sorted(served)},
            )
        if pin is not None and not any(r.version == pin for r in routes.revisions):
            raise NotFoundError(
                f"deployment {name!r} serves no version {pin}; it serves "
                f"{sorted({r.version for r in routes.revisions})}",
                details={"deployment": name, "version": pin},
            )
        if tail == ["ready"]:
            ready = has_ready(routes, pin)
            return json_response({"name": model, "ready": ready}, 200 if ready else 503)

        def upstream(backend: Backend) -> str:
            path = f"/v2/models/{backend.model}"
            if pin is not None:
                path += f"/versions/{backend.version}"
            return path + ("/infer" if tail else "")

        return await self._forward(request, project, name, upstream, pin, tail == ["infer"])
