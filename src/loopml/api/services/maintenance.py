"""Housekeeping the server runs on a timer (``server.maintenance_interval_s``)."""

from __future__ import annotations

from loopml import registry
from loopml.api.context import AppContext
from loopml.train import tracking


def run_maintenance(ctx: AppContext) -> None:
    """One round of housekeeping. Each task must be idempotent and quick.

    - Runs whose heartbeat stopped for longer than their timeout are marked LOST.
    - Model versions left PENDING by a registration that died are marked FAILED.
    """
    tracking.sweep_lost_runs(ctx.store)
    registry.fail_stale_registrations(ctx.store)
