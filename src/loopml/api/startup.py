"""What a server runs besides its routes, and how it is wired: the backends opened from the
settings, serving (control plane, targets, gateway), the record batcher and prediction log,
the embedded pipeline worker, automation engine, stream consumers and monitor, and
housekeeping on a timer. The app's lifespan starts them in that order and stops them in
reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from loopml import registry
from loopml.api.context import AppContext
from loopml.api.services.monitoring import start_monitor
from loopml.api.services.tables import spool_folder
from loopml.data import files
from loopml.data.records import RecordBatcher
from loopml.data.streams.supervisor import StreamSupervisor
from loopml.deploy import Serving
from loopml.pipelines.automation import AutomationEngine, AutomationThread
from loopml.pipelines.worker import Worker, WorkerConfig, WorkerThread, server_url
from loopml.predictions.log import PredictionLog
from loopml.settings import Settings
from loopml.train import tracking
from loopml.wiring import open_artifact_store, open_metadata_store

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


def build_serving(ctx: AppContext) -> Serving:
    """The control plane, deploy targets, gateway and reconciler of one app (not started),
    as the settings configure them."""
    return Serving.from_settings(ctx.store, ctx.artifacts, ctx.settings)


def build_worker(ctx: AppContext) -> Worker:
    """The pipeline worker embedded in the server (``loopml up``), not started: configured
    by the ``worker`` settings section, as ``loopml worker`` is."""
    config = WorkerConfig(**ctx.settings.worker.model_dump())
    # Steps that act through the API (deploy) call this very server, whatever client.url says.
    return Worker(ctx.store, ctx.artifacts, ctx.settings, config, api_url=server_url(ctx.settings))


def start_worker(ctx: AppContext) -> WorkerThread:
    """The embedded pipeline worker (``build_worker``), in a background thread."""
    return WorkerThread(build_worker(ctx)).start()


def start_automation(ctx: AppContext) -> AutomationThread:
    """Fire schedules and triggers from a background thread; engines of several servers on
    one database claim each firing, so each fires once."""
    engine = AutomationEngine(ctx.store, interval_s=ctx.settings.server.automation_interval_s)
    return AutomationThread(engine).start()


def start_streams(ctx: AppContext) -> StreamSupervisor | None:
    """A consumer process per stream source, unless ``server.streams`` turns them off."""
    if not ctx.settings.server.streams:
        return None
    return StreamSupervisor(ctx.store, ctx.settings).start()


def run_maintenance(ctx: AppContext) -> None:
    """One round of housekeeping. Each task must be idempotent and quick.

    - Runs whose heartbeat stopped for longer than their timeout are marked LOST.
    - Model versions left PENDING by a registration that died are marked FAILED.
    - Upload spool files left by a killed server (older than a few hours) are removed.
    """
    tracking.sweep_lost_runs(ctx.store)
    registry.fail_stale_registrations(ctx.store)
    files.sweep_spool(spool_folder(ctx))


def lifespan(ctx: AppContext) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: start everything the server runs, yield, stop it in reverse."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(_startup, ctx)
        housekeeping = asyncio.create_task(_maintain(ctx))
        serving: Serving = app.state.serving
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
        stream_consumers = start_streams(ctx)
        watcher = start_monitor(ctx, serving.gateway.metrics, serving.control)
        try:
            yield
        finally:
            if watcher is not None:
                await anyio.to_thread.run_sync(watcher.stop)
            if stream_consumers is not None:
                await anyio.to_thread.run_sync(stream_consumers.stop)
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

    return run
