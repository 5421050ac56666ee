"""The gateway: the platform's front door to every deployment's replicas.

Routes, mounted on the platform app (the request guard applies to them as to every route):

| verb | path | goes to |
|---|---|---|
| POST | ``/deployments/{name}/predict`` | a replica's ``/predict`` |
| GET, POST | ``/deployments/{name}/v2/...`` | a replica's ``/v2/...`` |
| GET, POST | ``/v2/models/{name}[/versions/{v}][/ready, /infer]`` | the same, for |
| | | deployment ``name`` |
| | ``/projects/{project}/deployments/{name}/...`` | the first two, in another project |
| GET | ``/metrics`` | the gateway's Prometheus metrics (see ``_gateway_metrics``) |

Without ``/projects/{project}`` the project is ``default``. In V2 paths the model may be
named by the deployment's name or by a model it serves; the gateway rewrites it to the
model of the replica it picks. ``/versions/{v}`` pins the request to the revision serving
version ``v``. ``/v2/health/live``, ``/v2/health/ready`` and ``.../ready`` are answered
by the gateway from what it knows, so probes never wake a deployment scaled to zero.

Per request: a revision is drawn by weight (the canary split), then a ready replica of it in
turn (round robin); a connection that fails is retried once on another replica. A
deployment without a ready replica (scaled to zero, or starting) is woken and the request
waits for a replica (the **activator**, bounded by ``activation_timeout_s``; then 503 with
``Retry-After``). Inference requests are also copied to the **shadow** revision, if any,
without waiting: its answer goes to ``on_answer`` (role ``shadow``) and into the metrics,
never to the client. Every answer says who gave it: ``X-Loopml-Revision``, ``X-Loopml-Model`` and
``X-Loopml-Model-Version``; the inference id (the client's ``X-Request-Id`` if it is safe,
else a new one) is the same for the primary and its shadow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from loopml.core.errors import (
    LoopmlError,
    ServiceUnavailableError,
)
from loopml.predictions.intake import Answer
from loopml.serve._fastpath import GatewayFastPath
from loopml.serve.gateway import _decide as decide
from loopml.serve.gateway._balance import Balancer
from loopml.serve.gateway._features import FeatureSource, with_features
from loopml.serve.gateway._requests import (
    ProxiedResponse,
    error_response,
    key_of,
    named,
    no_deployment,
    read_body,
    state,
)
from loopml.serve.gateway._upstream import (
    Unreachable,
    UpstreamAnswer,
    UpstreamClient,
    UpstreamTimeout,
)
from loopml.serve.gateway._v2 import Upstream, V2Handlers
from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.errors import GatewayTimeoutError
from loopml.serve.gateway.hooks import AnswerHook
from loopml.serve.gateway.metrics import ANONYMOUS, CALLER, GatewayMetrics
from loopml.serve.gateway.routing import Backend, RevisionRoute, Routes, RouteSource
from loopml.serve.metrics import CONTENT_TYPE

log = logging.getLogger("loopml.serve.gateway.app")

Handler = Callable[[Request], Awaitable[Response]]


class Gateway(V2Handlers):
    """Routes requests to the replicas ``source`` publishes (see the module docstring).

    Args:
        source: the target whose replicas it reaches (the local target).
        config: timeouts and bounds.
        on_answer: receives every successful inference answer given to a client and every
            shadow answer, each with its role (settable later as ``gateway.on_answer``;
            the prediction log connects it).
        features: completes the requests of deployments that declare feature views
            (settable later as ``gateway.features``; the platform connects its online store).
    """

    def __init__(
        self,
        source: RouteSource,
        config: GatewayConfig | None = None,
        *,
        on_answer: AnswerHook | None = None,
        features: FeatureSource | None = None,
    ) -> None:
        self.source = source
        self.features = features
        self.config = config or GatewayConfig()
        self.on_answer = on_answer
        self.metrics = GatewayMetrics(source.all_routes)
        self._client: UpstreamClient | None = None
        self._balance = Balancer()
        self._shadows: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the connection pool."""
        cfg = self.config
        self._client = UpstreamClient(
            connect_timeout_s=cfg.connect_timeout_s,
            timeout_s=cfg.timeout_s,
            max_connections=cfg.max_connections,
        )
        await self._client.start()

    async def close(self) -> None:
        """Let shadow copies in flight finish (briefly), then close the pool."""
        if self._shadows:
            await asyncio.wait(set(self._shadows), timeout=5)
        for task in list(self._shadows):
            task.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def routes(self) -> list[BaseRoute]:
        """The routes to mount on the platform app."""
        routes: list[BaseRoute] = []
        for prefix in ("", "/projects/{project}"):
            base = f"{prefix}/deployments/{{name}}"
            routes += [
                Route(f"{base}/predict", self._guarded(self._predict), methods=["POST"]),
                Route(f"{base}/v2", self._guarded(self._deployment_v2), methods=["GET", "POST"]),
                Route(
                    f"{base}/v2/{{rest:path}}",
                    self._guarded(self._deployment_v2),
                    methods=["GET", "POST"],
                ),
            ]
        # The root is a V2 server of its own: health, metadata, and every deployment of the
        # default project by its name or by the model it serves. Every method reaches the
        # handler, so that a wrong one is answered with the protocol's error body.
        both = ["GET", "POST"]
        routes.append(Route("/v2", self._guarded(self._server_v2), methods=both))
        routes.append(Route("/v2/health/{probe}", self._guarded(self._server_v2), methods=both))
        for tail in ("", "/ready", "/infer"):
            for model in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
                routes.append(Route(model + tail, self._guarded(self._root_v2), methods=both))
        routes.append(Route("/metrics", self._metrics, methods=["GET"]))
        return routes

    def allows_anonymous(self, project: str, name: str) -> bool:
        """Whether the deployment says ``auth: none`` (from its published routes, in memory;
        ``False`` for one the gateway does not route, so an unknown one asks for a token)."""
        routes = self.source.routes(project, name)
        return routes is not None and routes.auth == "none"

    def root_deployment(self, name: str) -> str:
        """The default project's deployment ``/v2/models/{name}`` reaches (see ``_v2``)."""
        return self._root_deployment(name)

    def fast_path(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind a middleware that serves the gateway's routes directly (see
        ``loopml.serve._fastpath.GatewayFastPath``); for the platform app's
        ``add_middleware``, inside the request guard."""
        return GatewayFastPath(app, self.routes())

    # ------------------------------------------------------------------ handlers

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            started = time.perf_counter()
            state(request.scope)["gateway_started"] = started
            try:
                return await handler(request)
            except LoopmlError as exc:
                key = key_of(request)
                # Only deployments that exist get series: a name in a URL is not a label.
                if key is not None and self.source.routes(*key) is not None:
                    elapsed = time.perf_counter() - started
                    # A replica that could not be reached or timed out counts against the
                    # revision it was sent to, so a canary's error budget sees it.
                    tried: RevisionRoute | None = state(request.scope).get("gateway_revision")
                    if tried is None and exc.status < 500:
                        # Refused before any model saw it: the caller's error, counted apart
                        # (no model's error rate, no window for a revision that was not asked).
                        self.metrics.refused.labels(*key, exc.code).inc()
                        return error_response(request.url.path, exc)
                    model, version, number = (
                        ("", "", "")
                        if tried is None
                        else (tried.model, str(tried.version), str(tried.number))
                    )
                    self.metrics.observe(
                        key,
                        model,
                        version,
                        number,
                        exc.status,
                        elapsed,
                        exc.code,
                        request.scope.get(CALLER, ANONYMOUS),
                    )
                return error_response(request.url.path, exc)

        return guarded

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def _predict(self, request: Request) -> Response:
        project, name = named(request)
        return await self._forward(request, project, name, lambda _: "/predict", None, True)

    # ------------------------------------------------------------------ routing

    def _routes(self, project: str, name: str) -> Routes:
        routes = self.source.routes(project, name)
        if routes is None:
            raise no_deployment(project, name)
        return routes

    async def _forward(
        self,
        request: Request,
        project: str,
        name: str,
        upstream: Upstream,
        pin: int | None,
        inference: bool,
    ) -> Response:
        key = (project, name)
        routes = self._routes(project, name)
        self.source.touch(project, name)
        body = await self._completed(request, key, routes, await read_body(request), inference)
        headers, inference_id = decide.replica_headers(request.scope["headers"])
        attempt = decide.first(self._balance, routes, pin) or await self._activate(key, pin)
        if inference and routes.shadow is not None:
            self._shadow(key, routes.shadow, request, body, upstream, headers)
        scoped = state(request.scope)
        while True:
            scoped["gateway_revision"] = attempt.revision
            path = upstream(attempt.backend)
            try:
                answer = await self._send(request, attempt.backend, path, body, headers)
                break
            except Unreachable:
                if not decide.retries(attempt):
                    raise ServiceUnavailableError(
                        f"deployment {name!r}: no replica could be reached; retry",
                        details={"deployment": name},
                    ) from None
                self.metrics.retries.labels(*key).inc()
                fresh = self.source.routes(project, name) or routes
                attempt = decide.again(self._balance, fresh, pin, attempt) or (
                    await self._activate(key, pin, retry=True)
                )
        settled = decide.settle(
            attempt.revision, answer.status, answer.headers.get("x-loopml-error-code"), inference
        )
        if settled.logged:
            self._served(request, key, attempt.revision, path, body, answer, inference_id)
        return self._answer(request, key, attempt.revision, answer, settled)

    async def _completed(
        self,
        request: Request,
        key: tuple[str, str],
        routes: Routes,
        body: bytes,
        inference: bool,
    ) -> bytes:
        """The body with the deployment's online features filled in (as it came when the
        deployment names no feature views, or the call is not an inference)."""
        if routes.features is None or request.method != "POST":
            return body
        predict = request.url.path.endswith("/predict")
        if not (predict or inference):
            return body
        return await with_features(self.features, key[0], key[1], routes.features, body, predict)

    def _served(
        self,
        request: Request,
        key: tuple[str, str],
        revision: RevisionRoute,
        path: str,
        body: bytes,
        answer: UpstreamAnswer,
        inference_id: str,
    ) -> None:
        """Hand a successful inference answer to ``on_answer`` (before the client gets it,
        so that what a client was answered is logged even if the replica dies next)."""
        hook = self.on_answer
        if hook is None:
            return
        latency_s = time.perf_counter() - state(request.scope)["gateway_started"]
        served = Answer(
            project=key[0],
            deployment=key[1],
            revision=revision.number,
            model=revision.model,
            version=revision.version,
            role=revision.role,
            # The replica's id: a /predict body may name its own.
            inference_id=answer.headers.get("x-inference-id") or inference_id,
            path=path,
            status=answer.status,
            latency_s=latency_s,
            arrived=time.time() - latency_s,
            request_body=body,
            body=answer.content,
        )
        try:
            hook(served)
        except Exception:
            log.exception("the answer hook failed on deployment %s", key[1])

    async def _activate(
        self, key: tuple[str, str], pin: int | None, *, retry: bool = False
    ) -> decide.Attempt:
        """Wake the deployment and wait (bounded) for a ready replica."""
        self.metrics.activations.labels(*key).inc()
        self.source.wake(*key)
        deadline = time.monotonic() + self.config.activation_timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            routes = self._routes(*key)
            picked = self._balance.pick(routes, pin, ())
            if picked is not None:
                return decide.Attempt(picked[0], picked[1], retry)
        raise ServiceUnavailableError(
            f"deployment {key[1]!r} has no ready replica after "
            f"{self.config.activation_timeout_s:g} s; see `loopml deployments show {key[1]}`",
            details={"project": key[0], "deployment": key[1]},
        )

    async def _send(
        self, request: Request, backend: Backend, path: str, body: bytes, headers: dict[str, str]
    ) -> UpstreamAnswer:
        """Call ``backend``; ``headers`` are the client's that it gets, with the inference id."""
        assert self._client is not None, "the gateway is not started"
        query = request.scope["query_string"]
        url = backend.url + path + ("?" + query.decode("latin-1") if query else "")
        backend.inflight += 1
        try:
            return await self._client.send(request.method, url, body, headers)
        except Unreachable:
            backend.failed = True
            raise
        except UpstreamTimeout as exc:
            raise GatewayTimeoutError(
                f"the replica did not answer within {self.config.timeout_s:g} s",
                details={"revision": backend.revision},
            ) from exc
        finally:
            backend.inflight -= 1

    def _answer(
        self,
        request: Request,
        key: tuple[str, str],
        revision: RevisionRoute,
        answer: UpstreamAnswer,
        settled: decide.Settled,
    ) -> Response:
        headers = answer.headers
        headers.update(settled.headers)
        elapsed = time.perf_counter() - state(request.scope)["gateway_started"]
        self.metrics.observe(
            key,
            revision.model,
            str(revision.version),
            str(revision.number),
            answer.status,
            elapsed,
            settled.code,
            request.scope.get(CALLER, ANONYMOUS),
        )
        return ProxiedResponse(answer.content, answer.status, headers)

    # ------------------------------------------------------------------ shadow

    def _shadow(
        self,
        key: tuple[str, str],
        shadow: RevisionRoute,
        request: Request,
        body: bytes,
        upstream: Upstream,
        headers: dict[str, str],
    ) -> None:
        labels = (*key, shadow.model, str(shadow.version))
        if not shadow.usable():
            self.metrics.shadow.labels(*labels, "unreachable").inc()
            return
        if len(self._shadows) >= self.config.max_shadow_inflight:
            self.metrics.shadow.labels(*labels, "dropped").inc()
            return
        backend = self._balance.turn(Routes(key[0], key[1], ()), shadow, ())
        path = upstream(backend)
        task = asyncio.create_task(
            self._shadow_call(key, shadow, request, backend, path, body, headers)
        )
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow_call(
        self,
        key: tuple[str, str],
        shadow: RevisionRoute,
        request: Request,
        backend: Backend,
        path: str,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        started = time.perf_counter()
        status, content, outcome = 0, b"", "unreachable"
        inference_id = headers["x-request-id"]
        try:
            answer = await self._send(request, backend, path, body, headers)
            status, content = answer.status, answer.content
            outcome = "ok" if status < 400 else "error"
        except (Unreachable, LoopmlError):
            pass
        self.metrics.shadow.labels(*key, shadow.model, str(shadow.version), outcome).inc()
        hook = self.on_answer
        if hook is None:
            return
        latency_s = time.perf_counter() - started
        try:
            hook(
                Answer(
                    project=key[0],
                    deployment=key[1],
                    revision=shadow.number,
                    model=shadow.model,
                    version=shadow.version,
                    role="shadow",
                    inference_id=inference_id,
                    path=path,
                    status=status,
                    latency_s=latency_s,
                    arrived=time.time() - latency_s,
                    request_body=body,
                    body=content,
                )
            )
        except Exception:
            log.exception("the answer hook failed on a shadow of deployment %s", key[1])
