"""One firing of a schedule or trigger: start a run, leave one waiting, or skip, by the
owner's concurrency policy (``core.automation.when_busy``); record it and emit
``schedule.fired`` / ``trigger.fired``.

Called inside the transaction whose claim (a schedule's tick, a trigger's cursor, a waiting
flag, a locked webhook trigger) made the firing this caller's alone, so the run, the
owner's new state, the history row and the event commit together or not at all.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from loopml.core.automation import AutomationKind, Firing, FiringOutcome, when_busy
from loopml.core.errors import LoopmlError
from loopml.pipelines.service import queue_run
from loopml.store import events, firings
from loopml.store.firings import Owner

log = logging.getLogger("loopml.pipelines.automation")


def fire(
    session: Session,
    who: Owner,
    *,
    now: datetime,
    event_id: int | None = None,
    payload: dict[str, Any] | None = None,
    waited: bool = False,
) -> Firing:
    """Fire ``who`` once (``waited``: start the run that was waiting for the last one)."""
    actor = f"{who.kind}:{who.name}"
    run_id: str | None = None
    reason: str | None
    state: dict[str, Any] = {"last_fired_at": now}
    if not waited and firings.run_active(session, who.last_run_id):
        busy = when_busy(
            AutomationKind(who.kind),
            who.concurrency,
            waiting=who.waiting,
            last_run_id=who.last_run_id,
            event_id=event_id,
        )
        outcome, reason = busy.outcome, busy.reason
        state.update(busy.state)
    else:
        try:
            # A run that cannot start (an input the pipeline no longer has) must not undo the
            # claim: the tick or event is spent and the reason recorded.
            with session.begin_nested():
                run = queue_run(session, who.project, who.pipeline, who.inputs, actor=actor)
        except LoopmlError as exc:
            outcome, reason = FiringOutcome.SKIPPED, f"the run could not start: {exc.message}"
            log.warning("%s %s: %s", who.kind, who.name, reason)
        else:
            run_id = run.id
            outcome = FiringOutcome.STARTED
            reason = f"waited for run {who.last_run_id} to end" if waited else None
            state.update(last_run_id=run_id, waiting=False)
    firings.mark(session, who.kind, who.id, **state)
    firing = firings.record(
        session,
        who,
        at=now,
        outcome=outcome,
        run_id=run_id,
        reason=reason,
        event_id=event_id,
        payload=payload,
    )
    events.append(
        session,
        type=f"{who.kind}.fired",
        subject=who.name,
        project=who.project,
        payload={
            who.kind: who.name,
            "pipeline": who.pipeline,
            "outcome": outcome.value,
            "run_id": run_id,
            "reason": reason,
            "event_id": event_id,
        },
        actor=actor,
    )
    return firing
