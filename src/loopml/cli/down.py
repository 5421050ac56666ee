"""``loopml down``: stop the ``loopml up`` that runs with this home, cleanly."""

from __future__ import annotations

import os
import signal
import time

import typer

from loopml.cli import _pidfile
from loopml.cli._context import state
from loopml.cli._output import console
from loopml.core.errors import NotFoundError, ServiceUnavailableError


def down(
    ctx: typer.Context,
    timeout: float = typer.Option(
        30.0, "--timeout", min=1, max=600, help="Seconds to wait for it to stop."
    ),
) -> None:
    """Stop the running `loopml up` of this home (LOOPML_HOME): deployments' replicas and
    workers stop with it; what it stored stays."""
    home = state(ctx).settings.home
    running = _pidfile.read(home)
    if running is None:
        raise NotFoundError(f"no loopml up is running with home {home}")
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pidfile.alive(running.pid):
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"loopml up (pid {running.pid}) did not stop within {timeout:g} s; "
                f"`kill {running.pid}` again, or `kill -9 {running.pid}` as a last resort"
            )
        time.sleep(0.1)
    _pidfile.path(home).unlink(missing_ok=True)
    console.print(f"stopped loopml at {running.url} (pid {running.pid})", highlight=False)
