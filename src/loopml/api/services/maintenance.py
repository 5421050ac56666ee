"""Housekeeping the server runs on a timer (``server.maintenance_interval_s``)."""

from __future__ import annotations

from loopml import registry
from loopml.api.context import AppContext
from loopml.api.services.tables import spool_folder
from loopml.data import files
from loopml.train import tracking


def run_maintenance(ctx: AppContext) -> None:
    """One round of housekeeping. Each task must be idempotent and quick.

    - Runs whose heartbeat stopped for longer than their timeout are marked LOST.
    - Model versions left PENDING by a registration that died are marked FAILED.
    - Upload spool files left by a killed server (older than a few hours) are removed.
    """
    tracking.sweep_lost_runs(ctx.store)
    registry.fail_stale_registrations(ctx.store)
    files.sweep_spool(spool_folder(ctx))
