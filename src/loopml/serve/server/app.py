"""``create_model_app``: one model version behind the Open Inference Protocol and ``/predict``.

Routes:

| verb | path | answer |
|---|---|---|
| GET | ``/v2/health/live`` | ``{"live": true}`` |
| GET | ``/v2/health/ready`` | ``{"ready": true}``; 503 while starting or shutting down |
| GET | ``/v2`` | server metadata |
| GET | ``/v2/models/{name}[/versions/{v}]`` | model metadata (inputs, outputs, datatypes) |
| GET | ``/v2/models/{name}[/versions/{v}]/ready`` | ``{"name", "ready"}`` |
| POST | ``/v2/models/{name}[/versions/{v}]/infer`` | V2 inference (``serve.server.v2``) |
| POST | ``/predict`` | ``{"instances": [...]}`` to predictions (and probabilities) |
| GET | ``/metrics`` | Prometheus text format (see ``loopml.serve.metrics``) |

A name or version other than the served ones is 404. Errors use the platform's body
(``{"error": {"code", "message", "details"}}``), plus ``inference_id``, as every JSON answer
does. Inputs are checked, per column, before they join a batch (422 naming the column and
row); the model then runs through ``MicroBatcher`` in a worker thread. The optional
``PredictionSink`` gets every successful prediction, without being waited on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from loopml._version import __version__
from loopml.core.errors import BadRequestError, LoopmlError, NotFoundError
from loopml.core.inference import InferenceRequest, parse_predict, parse_request
from loopml.packaging.runtime import Columns, ModelRuntime, Prediction
from loopml.predictions.intake import PredictionRecord, PredictionSink
from loopml.serve._fastpath import InferenceFastPath
from loopml.serve.metrics import CONTENT_TYPE, ServerMetrics
from loopml.serve.oip import MethodNotAllowedError, safe_id
from loopml.serve.server import v2
from loopml.serve.server._http import (
    ObserveMiddleware,
    decode_json,
    error_response,
    json_response,
    read_body,
)
from loopml.serve.server.batching import MicroBatcher
from loopml.serve.server.config import ModelServerSettings

log = logging.getLogger("loopml.serve")

# A body larger than this is decoded and checked in a worker thread: a 10,000-row request
# takes milliseconds, which would hold up every small request behind it on the event loop.
_OFFLOAD_BYTES = 256 * 1024

Handler = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


class _ModelServer:
    """The state and handlers behind one app."""

    def __init__(
        self,
        runtime: ModelRuntime,
        *,
        deployment: str,
        model_name: str,
        version: int,
        sink: PredictionSink | None,
        settings: ModelServerSettings,
    ) -> None:
        self.runtime = runtime
        self.deployment = deployment
        self.model_name = model_name
        self.version = version
        self.sink = sink
        self.settings = settings
        self.ready = True
        self.metrics = ServerMetrics(
            deployment=deployment, model=model_name, version=version, format=runtime.format
        )
        self.batcher: MicroBatcher[Columns, Prediction] = MicroBatcher(
            runtime.predict_many,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000.0,
            max_batch_rows=settings.max_batch_rows,
            max_queue=settings.max_queue,
            threads=settings.model_threads,
            inline_max_s=settings.inline_max_ms / 1000.0,
            on_batch=self.metrics.observe_batch,
        )
        self.metrics.track_inflight(lambda: self.batcher.inflight)

    # ------------------------------------------------------------------ health, metadata

    async def live(self, request: Request) -> Response:
        return json_response({"live": True, "inference_id": _id(request)})

    async def ready_check(self, request: Request) -> Response:
        status = 200 if self.ready else 503
        return json_response({"ready": self.ready, "inference_id": _id(request)}, status)

    async def server_metadata(self, request: Request) -> Response:
        body = {"name": "loopml", "version": __version__, "extensions": []}
        return json_response({**body, "inference_id": _id(request)})

    async def model_metadata(self, request: Request) -> Response:
        self._check_model(request)
        body = v2.model_metadata(self.runtime, self.model_name, self.version)
        return json_response({**body, "inference_id": _id(request)})

    async def model_ready(self, request: Request) -> Response:
        self._check_model(request)
        body = {"name": self.model_name, "ready": self.ready, "inference_id": _id(request)}
        return json_response(body, 200 if self.ready else 503)

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    # ------------------------------------------------------------------ inference

    async def infer(self, request: Request) -> Response:
        self._check_model(request)
        arrived = time.time()
        body = await read_body(request, self.settings.max_body_bytes)

        def check() -> tuple[InferenceRequest, list[str], Columns]:
            parsed = parse_request(decode_json(body))
            outputs = v2.output_names(self.runtime, parsed)
            max_rows = self.settings.max_rows
            return parsed, outputs, v2.columns_from_request(self.runtime, parsed, max_rows)

        parsed, outputs, columns = await _off_loop_if_large(check, len(body))
        prediction = await self.batcher.submit(columns, columns.rows)
        inference_id = _id(request)
        answer: dict[str, Any] = {
            "model_name": self.model_name,
            "model_version": str(self.version),
            "id": parsed.id if parsed.id is not None else inference_id,
            "outputs": v2.response_outputs(self.runtime, prediction, outputs),
            "inference_id": inference_id,
        }
        if parsed.parameters:
            answer["parameters"] = parsed.parameters
        self._record(request, "v2", arrived, columns, prediction)
        return json_response(answer)

    async def predict(self, request: Request) -> Response:
        arrived = time.time()
        body = await read_body(request, self.settings.max_body_bytes)

        def check() -> Columns:
            instances, ignore_extra = _instances(request, decode_json(body))
            max_rows = self.settings.max_rows
            return self.runtime.columns_from_instances(
                instances, max_rows=max_rows, ignore_extra=ignore_extra
            )

        columns = await _off_loop_if_large(check, len(body))
        prediction = await self.batcher.submit(columns, columns.rows)
        answer: dict[str, Any] = {"predictions": _json_array(prediction.predictions)}
        if prediction.probabilities is not None:
            answer["probabilities"] = prediction.probabilities
            answer["classes"] = self.runtime.classes
        answer.update(inference_id=_id(request), model=self.model_name, version=self.version)
        self._record(request, "predict", arrived, columns, prediction)
        return json_response(answer)

    def _record(
        self,
        request: Request,
        protocol: Literal["predict", "v2"],
        arrived: float,
        columns: Columns,
        prediction: Prediction,
    ) -> None:
        if self.sink is None:
            return
        record = PredictionRecord(
            inference_id=_id(request),
            deployment=self.deployment,
            model=self.model_name,
            version=self.version,
            timestamp=arrived,
            latency_s=time.perf_counter() - request.state.started,
            protocol=protocol,
            inputs=columns.arrays,
            predictions=prediction.predictions,
            probabilities=prediction.probabilities,
            classes=self.runtime.classes,
        )
        try:
            self.sink.record(record)
        except Exception:
            # Recording must never fail the answer; the counter makes the loss visible.
            self.metrics.sink_errors.inc()

    def _check_model(self, request: Request) -> None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.model_name or (version is not None and version != str(self.version)):
            asked = f"model {name[:100]!r}" + (f" version {version[:20]}" if version else "")
            raise NotFoundError(
                f"{asked} is not served here; this server serves model {self.model_name!r} "
                f"version {self.version}",
                details={"model": self.model_name, "version": self.version},
            )


def _id(request: Request) -> str:
    inference_id: str = request.state.inference_id
    return inference_id


async def _off_loop_if_large(check: Callable[[], T], size: int) -> T:
    """``check()``, in a worker thread when the body is large, so that decoding and checking
    one big request does not hold up the event loop (and every small request behind it)."""
    if size > _OFFLOAD_BYTES:
        return await anyio.to_thread.run_sync(check)
    return check()


def _instances(request: Request, body: object) -> tuple[object, bool]:
    """The body's instances, and whether columns the model does not take are ignored."""
    parsed = parse_predict(body)
    given = safe_id(parsed.inference_id)
    if given is not None:
        request.state.inference_id = given
    return parsed.instances, parsed.ignore_extra


def _json_array(array: Any) -> Any:
    return array.tolist() if array.dtype.kind in "OUS" else array


def _guarded(handler: Handler) -> Handler:
    """Turn every exception into the error body (with the inference id), never a bare 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except LoopmlError as exc:
            return error_response(request, exc)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.url.path)
            return error_response(
                request, LoopmlError("internal error; the server log has the details")
            )

    return guarded


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: LoopmlError
    if exc.status_code == 404:
        error = NotFoundError(
            f"no route {request.url.path[:200]!r}; see /v2/models/{{name}} and /predict"
        )
    elif exc.status_code == 405:
        error = MethodNotAllowedError(f"method {request.method} is not allowed on this path")
    else:
        error = BadRequestError(str(exc.detail))
    response = error_response(request, error)
    response.headers.update(exc.headers or {})
    return response


class _ModelApp(Starlette):
    """Starlette with the metrics middleware and the inference fast path outside its own
    outermost (server error) layer: the fast path's endpoints are guarded, so they turn
    every exception into an answer themselves, and one send wrapper fewer per request is
    measurable at thousands of requests a second."""

    def build_middleware_stack(self) -> ASGIApp:
        server: _ModelServer = self.state.server
        fast = {
            route.path: route
            for route in self.routes
            if isinstance(route, Route) and "POST" in (route.methods or ())
        }
        stack = InferenceFastPath(super().build_middleware_stack(), fast)
        return ObserveMiddleware(stack, server.metrics)


def create_model_app(
    runtime: ModelRuntime,
    *,
    deployment: str,
    model_name: str,
    version: int,
    sink: PredictionSink | None = None,
    settings: ModelServerSettings | None = None,
) -> Starlette:
    """Build the ASGI app serving ``runtime`` as ``model_name`` version ``version``.

    Args:
        runtime: the loaded model.
        deployment: the deployment this server belongs to (a metrics label, and in each
            prediction record).
        model_name: the registered model's name, as the V2 paths must name it.
        version: the model version, as ``/versions/{v}`` paths must give it.
        sink: receives every successful prediction (see ``loopml.predictions.intake``).
        settings: batching, limits and shutdown; the defaults when omitted.

    Returns:
        A Starlette app; its lifespan warms the model up and, on shutdown, lets queued
        requests finish.
    """
    server = _ModelServer(
        runtime,
        deployment=deployment,
        model_name=model_name,
        version=version,
        sink=sink,
        settings=settings or ModelServerSettings(),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(runtime.warm_up)
        server.ready = True
        try:
            yield
        finally:
            server.ready = False
            await server.batcher.close(server.settings.graceful_shutdown_s)

    def route(path: str, handler: Handler, method: str = "GET") -> Route:
        return Route(path, _guarded(handler), methods=[method])

    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    routes = [
        route("/v2/health/live", server.live),
        route("/v2/health/ready", server.ready_check),
        route("/v2", server.server_metadata),
        route(model, server.model_metadata),
        route(versioned, server.model_metadata),
        route(f"{model}/ready", server.model_ready),
        route(f"{versioned}/ready", server.model_ready),
        route(f"{model}/infer", server.infer, "POST"),
        route(f"{versioned}/infer", server.infer, "POST"),
        route("/predict", server.predict, "POST"),
        route("/metrics", server.metrics_text),
    ]
    app = _ModelApp(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.server = server
    return app
