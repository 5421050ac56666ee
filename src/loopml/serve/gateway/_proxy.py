"""The gateway process's HTTP server: an asyncio protocol over httptools, no ASGI.

A request on the gateway port is read whole (head and body, within the platform's body
limit). One with no ``Host``, two, or one outside the allowed list is refused here as the
platform's guard refuses it (``loopml.core.hosts``: one rule for every listening process);
any other is either

- **served here** (the lean path): ``POST .../deployments/{name}/predict``,
  ``.../deployments/{name}/v2/models/{m}/infer`` and ``/v2/models/{m}/infer`` of a
  deployment the route table marks ``lean`` (see ``wire.GatewayDeployment``), from a client that
  names no ``Origin``, and, where the deployment asks for a token,
  with a bearer token the platform allowed on it lately (it says so on a relayed answer:
  ``X-Loopml-Allowed``, for as long as it would remember the decision itself). A revision
  is drawn by weight and a replica in turn (``Balancer``); the body goes to the replica as
  it came, with the headers it needs and the inference id; the answer comes back as it
  came, with the headers that say who gave it. A successful answer is queued for the
  prediction log *before* the client gets it, and every answer's metrics sample;
  ``process.GatewayProcess`` reports both to the platform in batches;
- or **relayed** to the platform, as it came (method, path, query, headers, body), with the
  answer passed back: every other request on a serving path (a deployment asleep, with a
  shadow or feature views; a token not yet allowed; V2 metadata and health;
  ``/metrics``; anything the platform's guard must judge). The platform serves those
  exactly as on its own port.

Paths that are not serving paths get 404 with the platform's address (the API, the portal and
uploads live on the platform's port), except in front of the platform (``gateway.front``):
there a connection's first such request, and every later one on it, pass to the platform
through a ``_tunnel.Tunnel``, streamed both ways.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable

from loopml.core.errors import LoopmlError, NotFoundError, ServiceUnavailableError
from loopml.core.hosts import host_refusal
from loopml.predictions.intake import Answer
from loopml.serve.gateway import _decide as decide
from loopml.serve.gateway._balance import Balancer
from loopml.serve.gateway._connection import Connection, Request, encode_answer, error_answer
from loopml.serve.gateway._tunnel import Front, serving_path
from loopml.serve.gateway._upstream import (
    PASSED_ON,
    Unreachable,
    UpstreamAnswer,
    UpstreamClient,
    UpstreamTimeout,
)
from loopml.serve.gateway.config import GatewayConfig
from loopml.serve.gateway.errors import GatewayTimeoutError
from loopml.serve.gateway.routing import Backend, RevisionRoute
from loopml.serve.gateway.wire import (
    ALLOWED_HEADER,
    SECRET_HEADER,
    GatewayDeployment,
    Report,
    RouteTable,
)

log = logging.getLogger("loopml.serve.gateway")

_PREDICT = re.compile(r"/(?:projects/([^/]+)/)?deployments/([^/]+)/predict")
_DEPLOYMENT_INFER = re.compile(
    r"/(?:projects/([^/]+)/)?deployments/([^/]+)/v2/models/([^/]+)/infer"
)
_ROOT_INFER = re.compile(r"/v2/models/([^/]+)/infer")

# What the platform does not get of a relayed request's headers: hop-by-hop, and what the
# relay sets itself.
_NOT_RELAYED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"te",
        b"upgrade",
        b"expect",
        b"proxy-connection",
        b"x-forwarded-for",
        b"x-forwarded-proto",
    }
)
# What a relayed answer passes back to the client.
RELAYED_BACK = PASSED_ON | {
    "x-loopml-revision",
    "x-loopml-model",
    "x-loopml-model-version",
    "www-authenticate",
    "allow",
    "cache-control",
    ALLOWED_HEADER,
}
_MAX_ALLOWED = 10_000


class ProxyServer:
    """Serves the gateway port from the route table it holds (see the module docstring).

    Args:
        platform_url: the platform's own address (loopback), where relays and reports go.
        secret: what proves to the platform that a report comes from its gateway.
        config: the gateway's timeouts and bounds.
        max_answers: answers held for the prediction log while the platform cannot take
            them; past it the oldest are dropped (and counted).
        front: where to pass what is not served here, in front of the platform.
    """

    def __init__(
        self,
        platform_url: str,
        secret: str,
        config: GatewayConfig,
        *,
        max_answers: int = 100_000,
        front: Front | None = None,
    ) -> None:
        self.front = front
        self.platform_url = platform_url.rstrip("/")
        self.platform_host = self.platform_url.split("://", 1)[-1]
        self.secret = secret
        self.config = config
        self.table = RouteTable()
        self.report = Report()
        self.max_answers = max_answers
        self.replicas = UpstreamClient(
            connect_timeout_s=config.connect_timeout_s,
            timeout_s=config.timeout_s,
            max_connections=config.max_connections,
        )
        # The platform may hold a request while it wakes a deployment, and holds the route
        # table's long poll open: its calls may take longer than a replica's.
        self.platform = UpstreamClient(
            connect_timeout_s=config.connect_timeout_s,
            timeout_s=max(config.timeout_s, config.activation_timeout_s) + 30,
            max_connections=config.max_connections,
            passed=RELAYED_BACK,
            own_host=False,
        )
        self._balance = Balancer()
        # (token, project, deployment) -> until when (monotonic) and the caller's name.
        self._allowed: dict[tuple[str, str, str], tuple[float, str]] = {}

    async def start(self) -> None:
        await self.replicas.start()
        await self.platform.start()

    async def close(self) -> None:
        await self.replicas.close()
        await self.platform.close()

    def protocol(self) -> asyncio.Protocol:
        return Connection(self.handle, lambda: self.table.max_body_bytes, self.front)

    # ------------------------------------------------------------------ requests

    async def handle(self, request: Request) -> bytes:
        """The whole answer to ``request``."""
        refusal = host_refusal(request.headers, self.table.allowed_hosts)
        if refusal is not None:  # as the platform's guard refuses it: answered, then closed
            request.keep_alive = False
            return error_answer(request.path, refusal, False)
        try:
            lean = self._lean(request)
            if lean is not None:
                return await self._serve(request, *lean)
            if serving_path(request.path):
                return await self._relay(request)
            raise NotFoundError(
                f"{request.path[:200]!r} is not a serving path: this port serves deployments "
                f"(/deployments/NAME/predict, /v2/...); the API and portal are on "
                f"{self.platform_url}",
            )
        except LoopmlError as error:
            return error_answer(request.path, error, request.keep_alive)

    def _lean(self, request: Request) -> tuple[GatewayDeployment, Callable[[Backend], str]] | None:
        """The deployment and replica path of a request served here, else ``None``."""
        if request.method != "POST":
            return None
        target = self._target(request.path)
        if target is None:
            return None
        deployment = target[0]
        if not deployment.lean or not self._plain(request):
            return None
        if not deployment.open and not self._allows(request, deployment):
            return None
        return target

    def _target(self, path: str) -> tuple[GatewayDeployment, Callable[[Backend], str]] | None:
        """The deployment an inference path names, and its replica path."""
        table = self.table
        found = _PREDICT.fullmatch(path)
        if found is not None:
            deployment = table.deployments.get((found.group(1) or "default", found.group(2)))
            return None if deployment is None else (deployment, _predict)
        found = _DEPLOYMENT_INFER.fullmatch(path)
        if found is not None:
            deployment = table.deployments.get((found.group(1) or "default", found.group(2)))
            if deployment is None or found.group(3) not in deployment.models:
                return None
            return deployment, _infer
        found = _ROOT_INFER.fullmatch(path)
        if found is None:
            return None
        model = found.group(1)
        deployment = table.deployments.get(("default", model))
        if deployment is None and model in table.by_model:
            deployment = table.deployments.get(("default", table.by_model[model]))
        return None if deployment is None else (deployment, _infer)

    def _allows(self, request: Request, deployment: GatewayDeployment) -> bool:
        """Whether the platform allowed the request's token on the deployment lately."""
        token = request.bearer()
        if token is None:
            return False
        routes = deployment.routes
        allowed = self._allowed.get((token, routes.project, routes.name))
        if allowed is None or allowed[0] <= time.monotonic():
            return False
        request.caller = allowed[1]
        return True

    def _learn(self, request: Request, told: str) -> None:
        """Remember the platform's ``X-Loopml-Allowed`` on a relayed request's token."""
        token = request.bearer()
        parts = told.split(";", 3)
        if token is None or len(parts) != 4:
            return
        try:
            seconds = float(parts[0])
        except ValueError:
            return
        if len(self._allowed) >= _MAX_ALLOWED:
            self._allowed.clear()
        until = time.monotonic() + min(seconds, 60.0)
        self._allowed[(token, parts[1], parts[2])] = (until, parts[3])

    def _plain(self, request: Request) -> bool:
        """Whether the request needs none of the platform guard's judgement (its ``Host`` was
        judged in ``handle``): no ``Origin`` (a browser's cross-site call is the guard's to
        refuse) and a JSON body."""
        for name, value in request.headers:
            if name == b"origin":
                return False
            if name == b"content-type" and not _is_json(value):
                return False
        return True

    async def _serve(
        self, request: Request, deployment: GatewayDeployment, upstream: Callable[[Backend], str]
    ) -> bytes:
        routes = deployment.routes
        key = (routes.project, routes.name)
        self.report.touched.add(key)
        attempt = decide.first(self._balance, routes, None)
        if attempt is None:
            return await self._relay(request)  # every replica just failed: the platform's call
        headers, inference_id = decide.replica_headers(request.headers)
        while True:
            try:
                answer = await self._send(request, attempt.backend, upstream, headers)
                break
            except Unreachable:
                retry = decide.retries(attempt) and decide.again(
                    self._balance, routes, None, attempt
                )
                if not retry:
                    return await self._relay(request)
                attempt = retry
            except UpstreamTimeout:
                error = GatewayTimeoutError(
                    f"the replica did not answer within {self.config.timeout_s:g} s",
                    details={"revision": attempt.revision.number},
                )
                self._observe(key, attempt.revision, error.status, request, error.code)
                return error_answer(request.path, error, request.keep_alive)
        revision = attempt.revision
        settled = decide.settle(
            revision, answer.status, answer.headers.get("x-loopml-error-code"), True
        )
        if settled.logged:
            elapsed = time.perf_counter() - request.started
            path = upstream(attempt.backend)
            self._answered(request, key, revision, path, answer, inference_id, elapsed)
        self._observe(key, revision, answer.status, request, settled.code)
        headers = answer.headers
        headers.update(settled.headers)
        return encode_answer(answer.status, headers, answer.content, request.keep_alive)

    async def _send(
        self,
        request: Request,
        backend: Backend,
        upstream: Callable[[Backend], str],
        headers: dict[str, str],
    ) -> UpstreamAnswer:
        url = backend.url + upstream(backend) + ("?" + request.query if request.query else "")
        backend.inflight += 1
        try:
            return await self.replicas.send("POST", url, request.body, headers)
        except Unreachable:
            backend.failed = True
            raise
        finally:
            backend.inflight -= 1

    def _answered(
        self,
        request: Request,
        key: tuple[str, str],
        revision: RevisionRoute,
        path: str,
        answer: UpstreamAnswer,
        inference_id: str,
        elapsed: float,
    ) -> None:
        """Queue an answer for the prediction log, before the client gets it."""
        answers = self.report.answers
        if len(answers) >= self.max_answers:  # the platform is away: the oldest tenth goes
            self.bound(self.report, self.max_answers * 9 // 10)
        answers.append(
            Answer(
                project=key[0],
                deployment=key[1],
                revision=revision.number,
                model=revision.model,
                version=revision.version,
                role=revision.role,
                inference_id=answer.headers.get("x-inference-id") or inference_id,
                path=path,
                status=answer.status,
                latency_s=elapsed,
                arrived=time.time() - elapsed,
                request_body=request.body,
                body=answer.content,
            )
        )

    def bound(self, report: Report, limit: int) -> None:
        """Hold at most ``limit`` answers (and metrics samples) in ``report``, the newest;
        what goes is logged: it never reaches the prediction log."""
        dropped = report.trim(limit)
        if dropped:
            log.error("%d answers dropped from the prediction log: the platform is away", dropped)

    def _observe(
        self,
        key: tuple[str, str],
        revision: RevisionRoute,
        status: int,
        request: Request,
        code: str | None,
    ) -> None:
        self.report.observed.append(
            (
                key[0],
                key[1],
                revision.model,
                str(revision.version),
                str(revision.number),
                status,
                time.perf_counter() - request.started,
                code,
                request.caller,
            )
        )

    async def _relay(self, request: Request) -> bytes:
        """The platform's answer to ``request``, as it came (see the module docstring)."""
        headers: dict[str, str] = {}
        for name, value in request.headers:
            if name not in _NOT_RELAYED:
                text = name.decode("latin-1")
                if text in headers:  # a repeated header: one line, as HTTP allows
                    headers[text] += ", " + value.decode("latin-1")
                else:
                    headers[text] = value.decode("latin-1")
        headers["x-forwarded-for"] = request.client
        headers["x-forwarded-proto"] = "http"
        # Says to the platform that its own gateway relays this (a client's copy is replaced).
        headers[SECRET_HEADER] = self.secret
        url = self.platform_url + request.path + ("?" + request.query if request.query else "")
        # A HEAD's answer has a length and no body, which the relay's parser would wait for:
        # the platform is asked with GET, and its body left out here.
        head_only = request.method == "HEAD"
        method = "GET" if head_only else request.method
        try:
            answer = await self.platform.send(method, url, request.body, headers)
        except (Unreachable, UpstreamTimeout) as exc:
            raise ServiceUnavailableError(
                f"the platform behind this gateway did not answer ({exc}); retry"
            ) from None
        told = answer.headers.pop(ALLOWED_HEADER, None)
        if told is not None:
            self._learn(request, told)
        return encode_answer(
            answer.status, answer.headers, answer.content, request.keep_alive, head_only
        )


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


def _predict(backend: Backend) -> str:
    return "/predict"


def _infer(backend: Backend) -> str:
    return f"/v2/models/{backend.model}/infer"
