"""The automation engine: fire due schedules, react to new events, start waiting runs.

Every server runs one engine (started in the API app's lifespan, beside the embedded
worker). Engines sharing one database never fire the same thing twice: each firing is
claimed by a compare-and-set in the transaction that starts its run (a schedule's
``next_fire_at``, a trigger's event cursor, a ``waiting`` flag). A tick missed while every
server was down fires once, not once per missed tick: the next tick is computed from now.
No exception stops the engine's thread; a failed round is logged and the next one runs.

Example:
    >>> engine = AutomationEngine(store, interval_s=1.0)
    >>> engine.tick()              # one round, what tests call with their own clock
    >>> thread = AutomationThread(engine).start()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loopml.core.automation import WHERE_KEYS, TriggerOn
from loopml.core.clock import utcnow
from loopml.core.types import Event
from loopml.pipelines._cron import next_fire
from loopml.pipelines._firing import fire
from loopml.store import MetadataStore, firings, schedules, triggers

log = logging.getLogger("loopml.pipelines.automation")


@dataclass
class AutomationReport:
    """What one round did (counts of firings, by what caused them)."""

    schedules: int = 0
    events: int = 0
    waited: int = 0


def matches(on: TriggerOn, where: dict[str, str], event: Event) -> bool:
    """Whether ``event`` passes a trigger's ``where`` (the first key of each kind also
    matches the subject: a ``table.appended`` event names its table there)."""
    keys = WHERE_KEYS[on]
    for key, wanted in where.items():
        value = event.payload.get(key)
        if value is None and keys and key == keys[0]:
            value = event.subject
        if str(value) != wanted:
            return False
    return True


def _rows(event: Event) -> int:
    rows = event.payload.get("rows")
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else 0


class AutomationEngine:
    """Fires schedules and triggers of every project in one database.

    Args:
        store: the metadata database.
        interval_s: seconds between rounds in ``run``.
        clock: the current time (tests hand in their own to reach a cron tick at once).
    """

    def __init__(
        self,
        store: MetadataStore,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self._stop = threading.Event()

    # ------------------------------------------------------------------ one round

    def tick(self) -> AutomationReport:
        """One round: due schedules, new events, waiting runs whose predecessor ended."""
        report = AutomationReport()
        report.schedules = self._guarded(self._schedules)
        report.events = self._guarded(self._triggers)
        report.waited = self._guarded(self._waiting)
        return report

    def _guarded(self, step: Callable[[], int]) -> int:
        try:
            return step()
        except Exception:
            log.exception("automation round failed; retrying next round")
            return 0

    def _schedules(self) -> int:
        now = self.clock()
        with self.store.session() as session:
            due = schedules.due(session, now)
        fired = 0
        for schedule_id, old in due:
            try:
                fired += self._fire_schedule(schedule_id, old, now)
            except Exception:
                log.exception("schedule %s could not fire; retrying next round", schedule_id)
        return fired

    def _fire_schedule(self, schedule_id: str, old: datetime, now: datetime) -> int:
        with self.store.session() as session:
            cron = schedules.cron_of(session, schedule_id)
            if cron is None or not schedules.claim(
                session, schedule_id, old, next_fire(cron[0], cron[1], now)
            ):
                return 0  # deleted, or another engine fired this tick
            who = firings.owner(session, "schedule", schedule_id)
            if who is None or not who.enabled:
                return 0
            fire(session, who, now=now)
        return 1

    def _triggers(self) -> int:
        with self.store.session() as session:
            watching = triggers.watching(session)
        fired = 0
        for trigger_id, on, cursor in watching:
            try:
                fired += self._read_events(trigger_id, TriggerOn(on), cursor)
            except Exception:
                log.exception("trigger %s could not read events; retrying next round", trigger_id)
        return fired

    def _read_events(self, trigger_id: str, on: TriggerOn, cursor: int) -> int:
        now = self.clock()
        with self.store.session() as session:
            found = triggers.new_events(session, trigger_id, on.value, cursor)
            if not found:
                return 0
            pending, min_rows, where = triggers.rows_pending(session, trigger_id)
            hits: list[Event] = []
            for event in found:
                if not matches(on, where, event):
                    continue
                if min_rows is None:
                    hits.append(event)
                    continue
                pending += _rows(event)
                if pending >= min_rows:
                    hits.append(event)
                    pending = 0
            if not triggers.advance(
                session, trigger_id, cursor, found[-1].id, rows_pending=pending
            ):
                return 0  # another engine read these events
            who = firings.owner(session, "trigger", trigger_id)
            if who is None:
                return 0
            for event in hits:
                fire(session, who, now=now, event_id=event.id, payload=event.payload)
                who = firings.owner(session, "trigger", trigger_id) or who
        return len(hits)

    def _waiting(self) -> int:
        now = self.clock()
        started = 0
        for kind in ("schedule", "trigger"):
            with self.store.session() as session:
                candidates = firings.waiting(session, kind)
            for owner_id, last_run in candidates:
                try:
                    started += self._start_waiting(kind, owner_id, last_run, now)
                except Exception:
                    log.exception("%s %s: the waiting run could not start", kind, owner_id)
        return started

    def _start_waiting(self, kind: str, owner_id: str, last_run: str | None, now: datetime) -> int:
        with self.store.session() as session:
            if firings.run_active(session, last_run):
                return 0
            if not firings.claim_waiting(session, kind, owner_id):
                return 0
            who = firings.owner(session, kind, owner_id)
            if who is None:
                return 0
            fire(session, who, now=now, event_id=who.waiting_event_id, waited=True)
        return 1

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Tick every ``interval_s`` until ``stop``."""
        log.info("automation engine started (every %g s)", self.interval_s)
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.interval_s)
        log.info("automation engine stopped")

    def stop(self) -> None:
        """End ``run`` after its current round."""
        self._stop.set()


class AutomationThread:
    """An engine running in a background thread of this process (the API server)."""

    def __init__(self, engine: AutomationEngine) -> None:
        self.engine = engine
        self._thread = threading.Thread(target=engine.run, name="pipeline-automation", daemon=True)

    def start(self) -> AutomationThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the engine and wait for its round to end."""
        self.engine.stop()
        self._thread.join(timeout_s)
