"""``loopml worker``: a pipeline worker process against the configured metadata database
(runs on the server's side, not through the API)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import typer

from loopml.cli._context import state
from loopml.cli._output import console


def worker(
    ctx: typer.Context,
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1, max=64, help="Steps at once [worker.concurrency: 2]."
    ),
    lease: float | None = typer.Option(
        None, "--lease", min=0.1, max=3600, help="Lease seconds [worker.lease_s: 30]."
    ),
    heartbeat: float | None = typer.Option(
        None, "--heartbeat", min=0.05, max=1200, help="Seconds [worker.heartbeat_s: 2]."
    ),
    poll: float | None = typer.Option(
        None, "--poll", min=0.01, max=60, help="Idle poll seconds [worker.poll_s: 0.5]."
    ),
    sweep: float | None = typer.Option(
        None, "--sweep", min=0.05, max=3600, help="Sweep seconds [worker.sweep_s: 2]."
    ),
    worker_id: str | None = typer.Option(None, "--id", help="Name to hold leases under."),
    streams: bool = typer.Option(
        False, "--streams", help="Also run a consumer process per stream source."
    ),
    executor: str | None = typer.Option(
        None,
        "--executor",
        help="Where steps run: local (child processes) or ray (Ray tasks) "
        "[worker.executor.type: local].",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="The Ray cluster's head, host:port (implies --executor ray) "
        "[worker.executor.address].",
    ),
    cpus: float | None = typer.Option(
        None,
        "--cpus",
        min=0.01,
        max=1024,
        help="CPUs the local executor gives steps: their resources.cpus never add up to more "
        "[worker.executor.cpus: the CPU count, or --concurrency if larger].",
    ),
) -> None:
    """Run pipeline steps: claim them from the metadata database, run each in a child
    process (or a Ray task: --executor ray), renew its lease, commit its result. SIGTERM or
    Ctrl-C stops it; running steps are stopped and given back to the queue."""
    from loopml.pipelines.worker import Worker, WorkerConfig
    from loopml.wiring import open_artifact_store, open_metadata_store

    settings = state(ctx).settings
    flags = {
        "concurrency": concurrency,
        "lease_s": lease,
        "heartbeat_s": heartbeat,
        "poll_s": poll,
        "sweep_s": sweep,
    }
    fields = settings.worker.model_dump() | {k: v for k, v in flags.items() if v is not None}
    fields["executor"] = _executor(fields["executor"], executor, ray_address)
    if cpus is not None:
        if fields["executor"].get("type") != "local":
            raise typer.BadParameter("--cpus is for the local executor", param_hint="--cpus")
        fields["executor"] = fields["executor"] | {"cpus": cpus}
    config = WorkerConfig(**fields)
    store = open_metadata_store(settings)
    try:
        store.prepare(create=settings.database.auto_upgrade)
        store.check()
        running = Worker(
            store, open_artifact_store(settings), settings, config, worker_id=worker_id
        )

        def _stop(signum: int, _frame: FrameType | None) -> None:
            running.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        console.print(
            f"pipeline worker [bold]{running.id}[/] on {store.safe_url}: "
            f"{config.concurrency} at once, lease {config.lease_s:g} s, heartbeat "
            f"{config.heartbeat_s:g} s, executor {running.executor.name}",
            highlight=False,
        )
        supervisor = None
        if streams:
            from loopml.platform.stream_supervisor import StreamSupervisor

            supervisor = StreamSupervisor(store, settings).start()
        try:
            running.run()
        finally:
            if supervisor is not None:
                supervisor.stop()
    finally:
        store.dispose()


def _executor(configured: dict[str, Any], kind: str | None, address: str | None) -> dict[str, Any]:
    """The executor section with the flags applied: another type starts from its defaults."""
    if address is not None:
        kind = kind or "ray"
        if kind != "ray":
            raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--executor")
    if kind is None:
        return configured
    if kind not in ("local", "ray"):
        raise typer.BadParameter(f"{kind!r}: expected local or ray", param_hint="--executor")
    chosen = configured if configured.get("type") == kind else {"type": kind}
    return chosen | ({"address": address} if address is not None else {})
