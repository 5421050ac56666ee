"""Schedules and triggers as the rest of loopml sees them: what starts pipeline runs by itself.

A ``Schedule`` starts a run at each tick of a cron expression read in a time zone; a
``Trigger`` starts one when an event it watches is appended (``table.appended``,
``drift.detected``, ...) or when its webhook is called with its secret. Each start, skip or
wait is a ``Firing``. The engine that fires them is ``loopml.pipelines.automation``; cron
arithmetic lives there too (croniter), since ``core`` stays stdlib and pydantic. No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict

from loopml.core.errors import ValidationError

AUTOMATION_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
TRIGGER_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
MAX_CRON_CHARS = 120
MAX_ZONE_CHARS = 64
MAX_MIN_ROWS = 10**12
SECRET_HEADER = "X-Loopml-Secret"  # noqa: S105 (a header name, not a secret)


class Concurrency(StrEnum):
    """What a firing does while a run it started earlier is still queued or running.

    ``skip`` starts nothing (the skip is recorded); ``queue`` lets one more run wait and
    start when the active one ends (a further firing meanwhile is skipped).
    """

    SKIP = "skip"
    QUEUE = "queue"


class TriggerOn(StrEnum):
    """What a trigger reacts to: an event type, or a call to its webhook."""

    TABLE_APPENDED = "table.appended"
    DRIFT_DETECTED = "drift.detected"
    DRIFT_LABELLED = "drift.labelled"
    QUALITY_DEGRADED = "quality.degraded"
    MODEL_VERSION_REGISTERED = "model.version.registered"
    GATE_FAILED = "gate.failed"
    CODESET_VERSIONED = "codeset.versioned"
    WEBHOOK = "webhook"


WHERE_KEYS: dict[TriggerOn, tuple[str, ...]] = {
    TriggerOn.TABLE_APPENDED: ("table",),
    TriggerOn.DRIFT_DETECTED: ("deployment", "model"),
    TriggerOn.DRIFT_LABELLED: ("deployment", "model"),
    TriggerOn.QUALITY_DEGRADED: ("deployment", "model"),
    TriggerOn.MODEL_VERSION_REGISTERED: ("model",),
    TriggerOn.GATE_FAILED: ("model",),
    TriggerOn.CODESET_VERSIONED: ("codeset",),
    TriggerOn.WEBHOOK: (),
}
"""The filter keys each kind of trigger accepts, matched against the event's payload (and
its subject for the first key: a table's name is the subject of ``table.appended``)."""


class FiringOutcome(StrEnum):
    """How a firing ended: a run was started, one was left waiting, or nothing happened."""

    STARTED = "started"
    QUEUED = "queued"
    SKIPPED = "skipped"


class AutomationKind(StrEnum):
    """The two things that start runs by themselves; the noun in routes, commands, events
    (``schedule.fired``) and a firing's ``kind``."""

    SCHEDULE = "schedule"
    TRIGGER = "trigger"


@dataclass(frozen=True)
class BusyVerdict:
    """What a firing does while the run its owner started last is still active.

    Attributes:
        outcome: QUEUED (one run waits) or SKIPPED.
        reason: the sentence kept with the firing.
        state: the owner's columns to set (``waiting``, and the event a trigger waits with).
    """

    outcome: FiringOutcome
    reason: str
    state: dict[str, Any] = field(default_factory=dict)


def when_busy(
    kind: AutomationKind,
    concurrency: Concurrency,
    *,
    waiting: bool,
    last_run_id: str | None,
    event_id: int | None = None,
) -> BusyVerdict:
    """The concurrency policy, for a schedule or trigger whose last run is still active:
    ``queue`` lets one run wait (remembering the event a trigger fired on), and a further
    firing meanwhile is skipped; ``skip`` skips."""
    active = f"run {last_run_id} (started by this {kind.value}) is still active"
    if concurrency == Concurrency.QUEUE and not waiting:
        state: dict[str, Any] = {"waiting": True}
        if kind == AutomationKind.TRIGGER:
            state["waiting_event_id"] = event_id
        return BusyVerdict(FiringOutcome.QUEUED, f"{active}: this run waits for it", state)
    why = "one run already waits for it" if waiting else "the concurrency policy is skip"
    return BusyVerdict(FiringOutcome.SKIPPED, f"{active} and {why}")


def validate_automation_name(name: str, kind: str = "schedule") -> str:
    """Return ``name`` if it is a valid schedule or trigger name, else raise."""
    if not isinstance(name, str) or not AUTOMATION_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid {kind} name {repr(name)[:80]}: expected a lowercase letter followed by "
            "up to 62 lowercase letters, digits, '_' or '-' (for example 'nightly')",
            details={"field": "name", "pattern": AUTOMATION_NAME_PATTERN.pattern},
        )
    return name


def validate_trigger_id(trigger_id: str) -> str:
    """Return ``trigger_id`` if it looks like one (32 lowercase hex characters)."""
    if not isinstance(trigger_id, str) or not TRIGGER_ID_PATTERN.fullmatch(trigger_id):
        raise ValidationError(
            f"invalid trigger id {repr(trigger_id)[:80]}: expected 32 lowercase hex characters",
            details={"field": "id"},
        )
    return trigger_id


def validate_timezone(zone: str) -> ZoneInfo:
    """The IANA zone ``zone`` names (``Europe/Paris``, ``UTC``); ``ValidationError`` if none."""
    # available_timezones() keeps ZoneInfo from reading files named by arbitrary text
    # ('../../etc/passwd' is refused by zoneinfo too, but the set is the clearer rule).
    if not isinstance(zone, str) or len(zone) > MAX_ZONE_CHARS or zone not in _zones():
        raise ValidationError(
            f"unknown time zone {repr(zone)[:80]}: expected an IANA name such as 'UTC' or "
            "'Europe/Paris'",
            details={"field": "timezone"},
        )
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            f"unknown time zone {zone!r} ({exc})", details={"field": "timezone"}
        ) from exc


_ZONES: frozenset[str] = frozenset()


def _zones() -> frozenset[str]:
    global _ZONES
    if not _ZONES:
        _ZONES = frozenset(available_timezones() | {"UTC"})
    return _ZONES


def validate_where(on: TriggerOn, where: dict[str, Any]) -> dict[str, str]:
    """``where`` if each key is a filter ``on`` accepts and each value a non-empty name."""
    allowed = WHERE_KEYS[on]
    for key, value in where.items():
        if key not in allowed:
            accepted = ", ".join(repr(k) for k in allowed) or "none"
            raise ValidationError(
                f"trigger on {on.value!r} cannot filter on {key[:40]!r} (accepted: {accepted})",
                details={"field": f"where.{key[:40]}", "accepted": list(allowed)},
            )
        if not isinstance(value, str) or not 0 < len(value) <= 300:
            raise ValidationError(
                f"where.{key} must be a non-empty name of at most 300 characters",
                details={"field": f"where.{key}"},
            )
    return dict(where)


def validate_min_rows(on: TriggerOn, min_rows: int | None) -> int | None:
    """``min_rows`` if it is absent, or a positive count on a ``table.appended`` trigger."""
    if min_rows is None:
        return None
    if on != TriggerOn.TABLE_APPENDED:
        raise ValidationError(
            f"min_rows applies only to table.appended triggers, not {on.value!r}",
            details={"field": "min_rows"},
        )
    if isinstance(min_rows, bool) or not isinstance(min_rows, int):
        raise ValidationError("min_rows must be an integer", details={"field": "min_rows"})
    if not 1 <= min_rows <= MAX_MIN_ROWS:
        raise ValidationError(
            f"min_rows must be from 1 to {MAX_MIN_ROWS}, got {min_rows}",
            details={"field": "min_rows"},
        )
    return min_rows


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Schedule(_Frozen):
    """A pipeline started at each tick of ``cron`` in ``timezone``.

    Attributes:
        next_fire_at: the next tick (UTC), computed in the schedule's zone so DST moves it.
        waiting: a firing under the ``queue`` policy waits for the active run to end.
    """

    id: str
    project: str
    name: str
    pipeline: str
    cron: str
    timezone: str
    inputs: dict[str, Any]
    concurrency: Concurrency
    enabled: bool
    next_fire_at: datetime | None = None
    last_fired_at: datetime | None = None
    last_run_id: str | None = None
    waiting: bool = False
    actor: str
    created_at: datetime
    updated_at: datetime


class Trigger(_Frozen):
    """A pipeline started by an event (or a webhook call).

    Attributes:
        id: the trigger's id; a webhook is called at ``/api/v1/triggers/{id}/fire``.
        rows_pending: rows appended since the last firing (``min_rows`` triggers).
        secret: the webhook's secret, only in the answer that created the trigger (only a
            hash is stored).
    """

    id: str
    project: str
    name: str
    pipeline: str
    on: TriggerOn
    where: dict[str, str]
    min_rows: int | None = None
    rows_pending: int = 0
    inputs: dict[str, Any]
    concurrency: Concurrency
    enabled: bool
    last_fired_at: datetime | None = None
    last_run_id: str | None = None
    waiting: bool = False
    secret: str | None = None
    actor: str
    created_at: datetime
    updated_at: datetime


class Firing(_Frozen):
    """One firing of a schedule or trigger: the run it started, or why it started none.

    Attributes:
        event_id: the event that fired a trigger (``None`` for schedules and webhooks).
        payload: a webhook call's JSON body, or the firing event's payload.
    """

    id: str
    kind: str
    name: str
    time: datetime
    outcome: FiringOutcome
    run_id: str | None = None
    reason: str | None = None
    event_id: int | None = None
    payload: dict[str, Any] | None = None


def schedule_taken(project: str, name: str) -> str:
    """The message refusing a second schedule of ``name`` in ``project``, with the ways to
    change the one there is."""
    return (
        f"schedule {name!r} already exists in project {project!r}: pick another name, "
        "or change it with `loopml schedules` pause/resume or the PATCH route"
    )
