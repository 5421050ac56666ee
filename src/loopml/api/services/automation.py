"""The automation engine embedded in every API server (schedules and triggers)."""

from __future__ import annotations

from loopml.api.context import AppContext
from loopml.pipelines.automation import AutomationEngine, AutomationThread


def start_automation(ctx: AppContext) -> AutomationThread:
    """Fire schedules and triggers from a background thread; engines of several servers on
    one database claim each firing, so each fires once."""
    engine = AutomationEngine(ctx.store, interval_s=ctx.settings.server.automation_interval_s)
    return AutomationThread(engine).start()
