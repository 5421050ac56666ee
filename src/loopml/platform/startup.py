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
from datetime import timedelta

import anyio.to_thread
from fastapi import FastAPI
from pydantic import SecretStr

from loopml import registry
from loopml.auth.service import revoke_token, server_token
from loopml.core import layout
from loopml.core.auth import MAX_TOKEN_DAYS, SERVER_USER, ApiToken
from loopml.core.errors import ServiceUnavailableError
from loopml.core.timeline import mark
from loopml.data import files, lake
from loopml.data.features.online import LazyOnlineStore
from loopml.data.records import RecordBatcher
from loopml.data.streams.metrics import StreamCollector
from loopml.deploy import Serving
from loopml.deploy.gateways import FrontDoor, GatewayProcesses
from loopml.faces.context import AppContext, running_of
from loopml.monitor.disk import DiskReserve, DiskSpace, watched
from loopml.monitor.engine import MonitorThread
from loopml.monitor.heap import HeapCollector
from loopml.pipelines.automation import AutomationEngine, AutomationThread
from loopml.pipelines.worker import Worker, WorkerConfig, WorkerThread, server_url
from loopml.platform.gateway_link import GatewayLink
from loopml.platform.monitoring import MonitorProcess, start_monitor
from loopml.platform.stream_supervisor import StreamSupervisor
from loopml.predictions.log import PredictionLog
from loopml.registry import mlflow_recovery
from loopml.registry.mlflow_packaging import MlflowPackager
from loopml.settings import Settings
from loopml.system.heap import HeapTrim
from loopml.train import tracking
from loopml.wiring import open_artifact_store, open_metadata_store

log = logging.getLogger("loopml.api")


def build_context(settings: Settings) -> AppContext:
    """Open the backends named by ``settings`` and build the services over them."""
    from loopml.train.tracking.mlflow_records import MlflowRecords

    store, artifacts = open_metadata_store(settings), open_artifact_store(settings)
    return AppContext(
        settings=settings,
        store=store,
        artifacts=artifacts,
        online=LazyOnlineStore(settings.features.online, settings.home),
        mlflow=MlflowRecords(store),
        packager=MlflowPackager(store, artifacts, settings),
    )


def use_arrow_pool(name: str) -> None:
    """Make ``name`` (``server.arrow_memory_pool``) the allocator of this process's Arrow
    buffers from now on."""
    import pyarrow as pa

    pools = {
        "system": pa.system_memory_pool,
        "mimalloc": pa.mimalloc_memory_pool,
        "jemalloc": pa.jemalloc_memory_pool,
    }
    try:
        pa.set_memory_pool(pools[name]())
    except NotImplementedError:  # a pyarrow built without it
        log.warning(
            "Arrow's %s allocator is not available: keeping %s",
            name,
            pa.default_memory_pool().backend_name,
        )


def _startup(ctx: AppContext) -> None:
    use_arrow_pool(ctx.settings.server.arrow_memory_pool)
    # An empty database gets its schema; one at an older revision is refused (see
    # MetadataStore.prepare: `loopml up --upgrade` or `loopml db upgrade` upgrade it).
    if ctx.settings.database.auto_upgrade and ctx.store.prepare(create=True) is not None:
        log.info("database schema created at %s", ctx.store.head_revision())


def _tidy_at_start(ctx: AppContext) -> None:
    """What a stopped server left: versions PACKAGING, orphaned temporary artifact files.
    Health does not wait for it (a tree of artifacts can take long to walk)."""
    # At start, none of the versions left PACKAGING can be this process's own; a database
    # unreachable now leaves the server live and not ready (its health says so).
    try:
        resumed = _requeue_packaging(ctx, at_start=True)
    except ServiceUnavailableError as exc:
        log.warning("versions left PACKAGING were not checked: %s", exc.message)
        resumed = 0
    if resumed:
        log.info("converting again %d model versions a stopped server left PACKAGING", resumed)
    removed = ctx.artifacts.cleanup()
    if removed:
        log.info("removed %d orphaned temporary artifact files", removed)
    _sweep_pending_tables(ctx)


HALF_MADE_TABLE_AGE = timedelta(hours=1)
"""A table row whose first ingest recorded no commit for this long is deleted: the writer was
killed or refused (a younger one may be a first ingest of a large file still streaming)."""


def _sweep_pending_tables(ctx: AppContext) -> None:
    try:
        completed, deleted = lake.sweep_pending(
            ctx.store, ctx.artifacts, older_than=HALF_MADE_TABLE_AGE
        )
    except ServiceUnavailableError as exc:
        log.warning("tables whose first ingest was cut off were not checked: %s", exc.message)
        return
    if completed or deleted:
        log.info(
            "tables whose first ingest was cut off: %d completed from their log, %d removed",
            completed,
            deleted,
        )


def _requeue_packaging(ctx: AppContext, *, at_start: bool = False) -> int:
    if ctx.packager is None:
        return 0
    if not at_start:
        mlflow_recovery.heartbeat(ctx.store)
    stale = timedelta(seconds=ctx.settings.mlflow.convert_stale_s)
    return mlflow_recovery.requeue_orphans(ctx.packager, stale_after=stale, at_start=at_start)


async def _maintain(ctx: AppContext, reserve: DiskReserve, trim: HeapTrim) -> None:
    """Housekeeping on a timer, in a worker thread, never stopping on a failed round; the
    disk reserve is made again once space returns, and freed heap given back once the
    process has grown by ``server.heap_trim_step_bytes`` (``loopml.system.heap``)."""
    while True:
        await asyncio.sleep(ctx.settings.server.maintenance_interval_s)
        try:
            await anyio.to_thread.run_sync(reserve.make)
            await anyio.to_thread.run_sync(run_maintenance, ctx)
            await anyio.to_thread.run_sync(trim)
        except Exception:
            log.exception("housekeeping round failed; retrying next round")


def _make_reserve(ctx: AppContext) -> DiskReserve:
    """The home's disk reserve, made now where the disk has room; without room the server
    starts anyway, and says so."""
    size = ctx.settings.server.disk_reserve_bytes
    reserve = DiskReserve(ctx.settings.home / layout.DISK_RESERVE_FILE, size)
    if size and not reserve.make():
        log.warning(
            "no disk reserve: the disk holding %s has less than twice "
            "server.disk_reserve_bytes (%d bytes) free; a table delete, vacuum or gc on a "
            "full disk may then be refused. It is made once the disk has room",
            ctx.settings.home,
            size,
        )
    return reserve


def build_serving(ctx: AppContext) -> Serving:
    """The control plane, deploy targets, gateway and reconciler of one app (not started),
    as the settings configure them; the gateway completes feature-serving deployments'
    requests from the app's online store."""
    from loopml.data.features.serving import OnlineFeatureLookup

    serving = Serving.from_settings(ctx.store, ctx.artifacts, ctx.settings)
    serving.gateway.features = OnlineFeatureLookup(ctx.store, ctx.online)
    return serving


def build_worker(ctx: AppContext, token: str | None = None) -> Worker:
    """The pipeline worker embedded in the server (``loopml up``), not started: configured
    by the ``worker`` settings section, as ``loopml worker`` is; ``token`` is what steps
    acting through the API send (the settings' own ``token`` when omitted)."""
    config = WorkerConfig(**ctx.settings.worker.model_dump())
    settings = ctx.settings
    if token is not None:
        settings = settings.model_copy(update={"token": SecretStr(token)})
    # Steps that act through the API (deploy) call this very server, whatever client.url says.
    return Worker(ctx.store, ctx.artifacts, settings, config, api_url=server_url(settings))


def start_worker(ctx: AppContext, token: str | None = None) -> WorkerThread:
    """The embedded pipeline worker (``build_worker``), in a background thread."""
    return WorkerThread(build_worker(ctx, token)).start()


def worker_token(ctx: AppContext, key: bytes) -> ApiToken | None:
    """With authentication on and no ``LOOPML_TOKEN`` of its own, the embedded worker's
    steps act through the API with a token of the server's own user
    (``auth.service.server_token``), made at start and revoked at stop."""
    if not ctx.settings.auth.enabled or ctx.settings.token is not None:
        return None
    return server_token(ctx.store, key, lifetime=timedelta(days=MAX_TOKEN_DAYS))


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


async def start_gateways(
    ctx: AppContext,
    link: GatewayLink | None,
    front: FrontDoor | None,
    spawned: GatewayProcesses | None = None,
) -> GatewayProcesses | None:
    """The gateway processes (``loopml.deploy.gateways``) on ``gateway.port``, or on
    ``server.port`` in front of this process (``front``, which ``loopml up`` opened), fed by
    ``link``; ``spawned``: those ``loopml up`` started already, with ``link``'s secret.
    ``None`` when the gateway runs only in this process."""
    settings = ctx.settings
    if link is None or (settings.gateway.port is None and front is None):
        return None
    await link.start()
    processes = spawned or GatewayProcesses.from_settings(
        settings, secret=link.secret, platform_url=server_url(settings), front=front
    )
    await processes.start()
    return processes


def run_maintenance(ctx: AppContext) -> None:
    """One round of housekeeping. Each task must be idempotent and quick.

    - Runs whose heartbeat stopped for longer than their timeout are marked LOST.
    - Model versions left PENDING by a registration that died are verified again after two
      minutes and settled READY or FAILED; what is still PENDING after an hour is FAILED.
    - Versions this server is packaging are marked seen; those left PACKAGING by a server
      not seen for ``mlflow.convert_stale_s`` (stopped, here or on another host) are
      converted again here.
    - Upload spool files left by a killed server (older than a few hours) are removed.
    - Tables whose first ingest never committed are removed after an hour (never listed).
    """
    tracking.sweep_lost_runs(ctx.store)
    registry.settle_stale_registrations(ctx.store, ctx.artifacts)
    registry.fail_stale_registrations(ctx.store)
    _requeue_packaging(ctx)
    files.sweep_spool(files.spool_folder(ctx.settings))
    _sweep_pending_tables(ctx)


class Background:
    """What the server runs that health does not need: start-up housekeeping, the embedded
    worker (and its fork server), the automation engine, stream consumers and the monitor
    (whose first round reads every deployment's windows). ``loopml up`` starts them once its
    port answers (``Running.listening``), so they neither delay nor slow the first answer."""

    def __init__(self, ctx: AppContext, serving: Serving, auth_key: bytes) -> None:
        self.ctx, self.serving, self.auth_key = ctx, serving, auth_key
        self.own: ApiToken | None = None
        self.worker: WorkerThread | None = None
        self.automation: AutomationThread | None = None
        self.streams: StreamSupervisor | None = None
        self.monitor: MonitorThread | MonitorProcess | None = None

    async def start(self, listening: asyncio.Event | None = None) -> None:
        """Start each part, once ``listening`` is set when given."""
        ctx = self.ctx
        if listening is not None:
            await listening.wait()
        await anyio.to_thread.run_sync(_tidy_at_start, ctx)
        if ctx.settings.server.worker:
            self.own = await anyio.to_thread.run_sync(worker_token, ctx, self.auth_key)
            self.worker = start_worker(ctx, self.own.token if self.own is not None else None)
        mark("worker started")
        self.automation = start_automation(ctx)
        self.streams = start_streams(ctx)
        self.monitor = start_monitor(ctx, self.serving.gateway.metrics, self.serving.control)
        mark("automation, streams and monitor started")

    async def stop(self) -> None:
        """Stop what was started, in reverse."""
        for part in (self.monitor, self.streams, self.automation, self.worker):
            if part is not None:
                await anyio.to_thread.run_sync(part.stop)
        own = self.own
        if own is not None:
            await anyio.to_thread.run_sync(
                lambda: revoke_token(self.ctx.store, SERVER_USER, own.id, actor="server")
            )


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("starting the background parts failed", exc_info=task.exception())


def lifespan(
    link: GatewayLink | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: start what the server runs (what health does not need once
    ``Running.listening`` is set, when it is given), yield, stop it in reverse; ``link``
    feeds the gateway processes, if the settings start any."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        running = running_of(app)
        ctx, serving = running.context, running.serving
        await anyio.to_thread.run_sync(_startup, ctx)
        mark("database ready")
        reserve = await anyio.to_thread.run_sync(_make_reserve, ctx)
        running.reserve = reserve
        trim = HeapTrim(ctx.settings.server.heap_trim_step_bytes)
        serving.gateway.metrics.registry.register(HeapCollector(trim))
        housekeeping = asyncio.create_task(_maintain(ctx, reserve, trim))
        await serving.start()
        records = RecordBatcher(ctx.store, ctx.artifacts, ctx.settings.lake)
        running.records = records
        disk = DiskSpace(
            watched(ctx.settings.home, ctx.artifacts.uri, ctx.settings.database_url), reserve
        )
        running.disk = disk  # counts the requests refused with DiskFullError
        serving.gateway.metrics.registry.register(disk)
        # Answers through the gateway (and the shadow's) are logged here, in the platform.
        predictions = PredictionLog(
            records, on_disk_full=lambda rows: disk.refused("prediction_log", rows)
        )
        serving.gateway.on_answer = predictions.log_answer
        mark("serving started")
        # Before health answers: in front of the platform, they answer on server.port.
        gateways = await start_gateways(ctx, link, running.front, running.gateways)
        running.gateways = gateways  # stopped first on the way out (cli/_uvicorn.py)
        mark("gateway processes started")
        background = Background(ctx, serving, running.auth_key)
        later = asyncio.create_task(background.start(running.listening))
        later.add_done_callback(_report_failure)
        if running.listening is None:
            await later
        # Wherever the consumers run (here or in workers), their reports are on /metrics.
        serving.gateway.metrics.registry.register(StreamCollector(ctx.store))
        try:
            yield
        finally:
            later.cancel()
            await asyncio.gather(later, return_exceptions=True)  # its failure is logged
            await background.stop()
            if gateways is not None and link is not None:
                # First: they post their last answers to the prediction log on the way out.
                await gateways.close()
                await link.close()
            await serving.close()
            await predictions.close()
            # Posts still waiting for their batch are committed and answered before the
            # store goes away.
            await records.close()
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping
            if ctx.packager is not None:
                await anyio.to_thread.run_sync(ctx.packager.close)
            ctx.online.close()
            ctx.store.dispose()

    return run
