"""The app factory: one FastAPI app with its backends, guard, error handlers and routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from loopml import __version__
from loopml._backends import open_artifact_store, open_metadata_store
from loopml.api.context import AppContext
from loopml.api.errors import install_error_handlers
from loopml.api.guard import GuardConfig, RequestGuardMiddleware, is_inference_path
from loopml.api.routes import (
    artifacts,
    datasets,
    deployments,
    events,
    experiments,
    feedback,
    gate,
    health,
    models,
    pipelines,
    predictions,
    projects,
    runs,
    schedules,
    sql,
    tables,
    transforms,
    triggers,
)
from loopml.api.services.automation import start_automation
from loopml.api.services.deployments import build_serving
from loopml.api.services.maintenance import run_maintenance
from loopml.api.services.pipelines import start_worker
from loopml.data.records import RecordBatcher
from loopml.serve.predlog import PredictionLog
from loopml.settings import Settings

log = logging.getLogger("loopml.api")


def build_context(settings: Settings) -> AppContext:
    """Open the backends named by ``settings``."""
    return AppContext(
        settings=settings,
        store=open_metadata_store(settings),
        artifacts=open_artifact_store(settings),
    )


def _startup(ctx: AppContext) -> None:
    if ctx.settings.database.auto_upgrade and ctx.store.needs_upgrade():
        revision = ctx.store.upgrade()
        log.info("database upgraded to %s", revision)
    removed = ctx.artifacts.cleanup()
    if removed:
        log.info("removed %d orphaned temporary artifact files", removed)


async def _maintain(ctx: AppContext) -> None:
    """Housekeeping on a timer, in a worker thread, never stopping on a failed round."""
    while True:
        await asyncio.sleep(ctx.settings.server.maintenance_interval_s)
        try:
            await anyio.to_thread.run_sync(run_maintenance, ctx)
        except Exception:
            log.exception("housekeeping round failed; retrying next round")


def create_app(settings: Settings | None = None, *, context: AppContext | None = None) -> FastAPI:
    """Build the loopml API app.

    Args:
        settings: the settings to use; read from the environment when omitted.
        context: ready-made backends (tests hand in their own); built from settings if omitted.
    """
    settings = settings or (context.settings if context else Settings())
    ctx = context or build_context(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_startup, ctx)
        housekeeping = asyncio.create_task(_maintain(ctx))
        await serving.start()
        records = RecordBatcher(ctx.store, ctx.artifacts, ctx.settings.lake)
        app.state.records = records
        # Answers through the gateway (and the shadow's) are logged here, in the platform.
        predictions = PredictionLog(records)
        serving.gateway.on_answer = predictions.log_answer
        if serving.gateway.on_shadow is None:
            serving.gateway.on_shadow = predictions.log_shadow
        worker = start_worker(ctx)
        automation = start_automation(ctx)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(automation.stop)
            await anyio.to_thread.run_sync(worker.stop)
            await serving.close()
            await predictions.close()
            # Posts still waiting for their batch are committed and answered before the
            # store goes away.
            await records.close()
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            ctx.store.dispose()

    app = FastAPI(
        title="loopml",
        version=__version__,
        description="The whole machine-learning loop in one self-hosted install.",
        openapi_url="/api/v1/openapi.json",
        # The interactive docs pages load their scripts from a CDN; loopml serves no CDN code.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.serving = serving = build_serving(ctx)
    app.router.routes.extend(serving.gateway.routes())
    install_error_handlers(app)
    for module in (
        health,
        feedback,
        predictions,
        projects,
        events,
        artifacts,
        experiments,
        runs,
        models,
        gate,
        sql,
        tables,
        datasets,
        transforms,
        deployments,
        pipelines,
        schedules,
        triggers,
    ):
        app.include_router(module.router)
    hosts = {h.lower() for h in settings.server.allowed_hosts} | {settings.server.host.lower()}
    # Inside the guard: the gateway's routes skip FastAPI's own layers (its hot path).
    app.add_middleware(serving.gateway.fast_path)
    app.add_middleware(
        RequestGuardMiddleware,
        config=GuardConfig(
            max_body_bytes=settings.server.max_body_bytes,
            max_upload_bytes=settings.server.max_upload_bytes,
            raw_body_route=artifacts.is_upload_path,
            allowed_hosts=frozenset(hosts),
            ndjson_route=tables.is_records_path,
            inference_route=is_inference_path,
        ),
    )
    return app
