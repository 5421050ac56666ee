"""The app factories: the API's app with its guards, error handlers and routers
(``create_api_app``), and the platform's whole app, the API's with the portal on it
(``create_app``); how the backends are opened and what runs in the background is
``loopml.platform.startup``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

from fastapi import Depends, FastAPI
from starlette.routing import BaseRoute

from loopml._version import __version__
from loopml.api import mlflow, openapi
from loopml.api.routes import artifacts, codesets, tables
from loopml.api.routes.all import MODULES as ROUTE_MODULES
from loopml.auth.cache import TokenCache
from loopml.auth.install import load_or_create_secret
from loopml.auth.ratelimit import FailureLimiter
from loopml.faces.authz import enforce
from loopml.faces.context import AppContext, Running
from loopml.platform.csrf import CrossSiteGuardMiddleware
from loopml.platform.errors import install_error_handlers
from loopml.platform.gateway_link import GatewayLink
from loopml.platform.guard import GuardConfig, RequestGuardMiddleware, is_inference_path
from loopml.platform.serving_auth import ServingAuthMiddleware
from loopml.platform.startup import build_context, build_serving, lifespan
from loopml.portal import install as install_portal
from loopml.portal.viewer import is_form_path
from loopml.serve.gateway.wire import REPORT_PATH
from loopml.settings import Settings

log = logging.getLogger("loopml.api")


@cache
def _api_routes() -> tuple[BaseRoute, ...]:
    """The API's routes, every one behind the permission check (a no-op with authentication
    off), built once for the process and shared by each app it makes, as the MLflow layer's
    are: they hold no state of an app's (a route reads its app's from the request). FastAPI
    builds an included router's routes (their parameters' and answers' pydantic adapters)
    on its first request, per app; the tests make an app for each of about 1,800 API tests,
    and that building was most of each one's time."""
    template = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for module in ROUTE_MODULES:
        template.include_router(module.router, dependencies=[Depends(enforce)])
    return tuple(template.router.routes)


def create_app(
    settings: Settings | None = None,
    *,
    context: AppContext | None = None,
    gateway_secret: str | None = None,
) -> FastAPI:
    """The platform's app: the API's (``create_api_app``, same arguments) with the portal
    installed; the portal's forms pass the cross-site guard only from this server's own
    origin."""
    app = create_api_app(
        settings, context=context, form_route=is_form_path, gateway_secret=gateway_secret
    )
    install_portal(app)
    return app


def create_api_app(
    settings: Settings | None = None,
    *,
    context: AppContext | None = None,
    form_route: Callable[[str], bool] = lambda path: False,
    gateway_secret: str | None = None,
) -> FastAPI:
    """Build the loopml API app.

    Args:
        settings: the settings to use; read from the environment when omitted.
        context: ready-made backends (tests hand in their own); built from settings if omitted.
        form_route: the paths whose handlers check a form's own CSRF field (the portal's),
            which the cross-site guard lets post a form body from this server's origin.
        gateway_secret: the secret of the gateway processes ``loopml up`` spawned already.
    """
    settings = settings or (context.settings if context else Settings())
    ctx = context or build_context(settings)
    serving = build_serving(ctx)
    key = load_or_create_secret(settings.home)
    failures = FailureLimiter(settings.auth.login_failures_per_minute)
    running = Running(context=ctx, serving=serving, auth_key=key, auth_failures=failures)
    link: GatewayLink | None = None
    if settings.gateway.port is not None or settings.gateway.front:
        # The gateway processes' route feed and reports (loopback, checked by a secret).
        link = GatewayLink(serving.gateway, settings, gateway_secret)

    app = FastAPI(
        title="loopml",
        version=__version__,
        description="The whole machine-learning loop in one self-hosted install.",
        openapi_url="/api/v1/openapi.json",
        # The interactive docs pages load their scripts from a CDN; loopml serves no CDN code.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan(link),
    )
    # The one thing on app.state; routes and pages read it through loopml.faces.context.
    app.state.running = running
    app.router.routes.extend(serving.gateway.routes())
    if link is not None:
        app.router.routes.extend(link.routes())
    install_error_handlers(app)
    app.router.routes.extend(_api_routes())
    mlflow.install(app, dependencies=[Depends(enforce)])
    openapi.install(app)
    hosts = {h.lower() for h in settings.server.allowed_hosts} | {settings.server.host.lower()}
    # Inside the guard: the gateway's routes skip FastAPI's own layers (its hot path).
    app.add_middleware(serving.gateway.fast_path)
    if settings.auth.enabled:
        cache = TokenCache(ctx.store, key)
        app.add_middleware(
            ServingAuthMiddleware,
            cache=cache,
            failures=failures,
            # The gateway's own rule for which deployment /v2/models/{name} reaches.
            root_deployment=serving.gateway.root_deployment,
            # A deployment's ``auth: none``, from the routes the gateway holds.
            allows_anonymous=serving.gateway.allows_anonymous,
            # Its gateway processes learn which tokens it allowed (X-Loopml-Allowed).
            gateway_secret=link.secret if link is not None else None,
        )
    app.add_middleware(
        RequestGuardMiddleware,
        config=GuardConfig(
            max_body_bytes=settings.server.max_body_bytes,
            max_upload_bytes=settings.server.max_upload_bytes,
            raw_body_route=lambda path: (
                path == REPORT_PATH
                or artifacts.is_upload_path(path)
                or mlflow.is_upload_path(path)
                or codesets.is_upload_path(path)
            ),
            allowed_hosts=frozenset(hosts),
            ndjson_route=tables.is_records_path,
            inference_route=is_inference_path,
            form_route=form_route,
        ),
    )
    app.add_middleware(
        CrossSiteGuardMiddleware,
        allowed_origins=settings.server.allowed_origins,
        form_route=form_route,
    )
    return app
