"""``loopml worker``: a pipeline worker process against the configured metadata database
(runs on the server's side, not through the API)."""

from __future__ import annotations

import signal
from types import FrameType

import typer

from loopml.cli._context import state
from loopml.cli._output import console


def worker(
    ctx: typer.Context,
    concurrency: int = typer.Option(2, "--concurrency", "-c", min=1, max=64, help="Steps at once."),
    lease: float = typer.Option(6.0, "--lease", min=0.1, max=3600, help="Lease seconds."),
    heartbeat: float = typer.Option(2.0, "--heartbeat", min=0.05, max=1200, help="Seconds."),
    poll: float = typer.Option(0.5, "--poll", min=0.01, max=60, help="Idle poll seconds."),
    sweep: float = typer.Option(2.0, "--sweep", min=0.05, max=3600, help="Sweep seconds."),
    worker_id: str | None = typer.Option(None, "--id", help="Name to hold leases under."),
) -> None:
    """Run pipeline steps: claim them from the metadata database, run each in a child
    process, renew its lease, commit its result. SIGTERM or Ctrl-C stops it; running steps
    are stopped and given back to the queue."""
    from loopml._backends import open_artifact_store, open_metadata_store
    from loopml.pipelines.worker import Worker, WorkerConfig

    settings = state(ctx).settings
    config = WorkerConfig(
        concurrency=concurrency,
        lease_s=lease,
        heartbeat_s=heartbeat,
        poll_s=poll,
        sweep_s=sweep,
    )
    store = open_metadata_store(settings)
    try:
        if settings.database.auto_upgrade and store.needs_upgrade():
            store.upgrade()
        store.check()
        running = Worker(
            store, open_artifact_store(settings), settings, config, worker_id=worker_id
        )

        def _stop(signum: int, _frame: FrameType | None) -> None:
            running.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        console.print(
            f"pipeline worker [bold]{running.id}[/] on {store.safe_url}: {concurrency} at once, "
            f"lease {lease:g} s, heartbeat {heartbeat:g} s",
            highlight=False,
        )
        running.run()
    finally:
        store.dispose()
