"""Schedules and triggers as services: check, create, change, delete, and fire webhooks.

Everything a person sends is checked here before the store sees it (cron, zone, event
kind, filter keys, inputs against the pipeline's newest spec), so a mistake is a 4xx at
creation, not a silent skip at 3 a.m. The engine that fires them is ``automation``.

Example:
    >>> create_schedule(store, "default", name="nightly", pipeline="retrain",
    ...                 cron="0 3 * * *", timezone="Europe/Paris", actor="ada")
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from loopml.core.automation import (
    Concurrency,
    Firing,
    FiringOutcome,
    Schedule,
    Trigger,
    TriggerOn,
    validate_automation_name,
    validate_min_rows,
    validate_timezone,
    validate_where,
)
from loopml.core.clock import utcnow
from loopml.core.errors import (
    ConflictError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ValidationError,
)
from loopml.core.jsontext import loads_strict
from loopml.pipelines._cron import next_fire, validate_cron
from loopml.pipelines._firing import fire
from loopml.pipelines.service import check_inputs
from loopml.store import MetadataStore, automations, firings, schedules, triggers
from loopml.store.automations import Kind

MAX_PAYLOAD_BYTES = 64 * 1024
SCHEDULE_FIELDS = frozenset({"enabled", "cron", "timezone", "inputs", "concurrency"})
TRIGGER_FIELDS = frozenset({"enabled", "where", "min_rows", "inputs", "concurrency"})
Clock = Callable[[], datetime]
Domain = TypeVar("Domain")


def hash_secret(secret: str) -> str:
    """What is stored of a webhook's secret: its SHA-256 (the secret is shown once)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A fresh webhook secret (a trigger's, a codeset's)."""
    return f"lmwh_{secrets.token_urlsafe(32)}"


def _concurrency(value: Concurrency | str) -> Concurrency:
    try:
        return Concurrency(value)
    except ValueError:
        raise ValidationError(
            f"invalid concurrency {str(value)[:40]!r}: expected 'skip' or 'queue'",
            details={"field": "concurrency"},
        ) from None


def _on(value: TriggerOn | str) -> TriggerOn:
    try:
        return TriggerOn(value)
    except ValueError:
        kinds = ", ".join(k.value for k in TriggerOn)
        raise ValidationError(
            f"invalid trigger kind {str(value)[:60]!r}: expected one of {kinds}",
            details={"field": "on"},
        ) from None


def _refuse_unknown(noun: str, fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValidationError(
            f"a {noun} has no field {unknown[0]!r} to change (fields: "
            f"{', '.join(sorted(allowed))})",
            details={"field": unknown[0]},
        )


def _shared_changes(
    session: Session, project: str, pipeline: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """The checked changes every automation accepts: concurrency, inputs, enabled (checked
    after each kind's own fields, in this order)."""
    changes: dict[str, Any] = {}
    if fields.get("concurrency") is not None:
        changes["concurrency"] = _concurrency(fields["concurrency"])
    if fields.get("inputs") is not None:
        changes["inputs"] = dict(fields["inputs"])
        check_inputs(session, project, pipeline, changes["inputs"])
    if fields.get("enabled") is not None:
        changes["enabled"] = bool(fields["enabled"])
    return changes


class Automations(Generic[Domain]):
    """What schedules and triggers share as services: read one, list, delete, history.

    ``SCHEDULES`` and ``TRIGGERS`` are the two instances; creating and changing one are
    each kind's own (``create_schedule``, ``update_trigger``, ...).
    """

    def __init__(self, kind: Kind[Any, Domain]) -> None:
        self.kind: Kind[Any, Domain] = kind

    def get(self, store: MetadataStore, project: str, name: str) -> Domain:
        """One by name (a trigger never with its secret)."""
        with store.session() as session:
            return automations.get(session, self.kind, project, name)

    def list(self, store: MetadataStore, project: str) -> list[Domain]:
        """A project's, by name."""
        with store.session() as session:
            return automations.list_(session, self.kind, project)

    def delete(self, store: MetadataStore, project: str, name: str, *, actor: str) -> None:
        """Remove one and its history (the runs it started stay)."""
        with store.session() as session:
            automations.delete(session, self.kind, project, name, actor=actor)

    def history(
        self, store: MetadataStore, project: str, name: str, limit: int = 50
    ) -> builtins.list[Firing]:
        """Its firings, newest first."""
        with store.session() as session:
            row, _ = automations.find(session, self.kind, project, name)
            return firings.history(session, row.id, limit)


SCHEDULES: Automations[Schedule] = Automations(schedules.KIND)
TRIGGERS: Automations[Trigger] = Automations(triggers.KIND)
get_schedule = SCHEDULES.get
list_schedules = SCHEDULES.list
delete_schedule = SCHEDULES.delete
schedule_history = SCHEDULES.history
get_trigger = TRIGGERS.get
list_triggers = TRIGGERS.list
delete_trigger = TRIGGERS.delete
trigger_history = TRIGGERS.history


# ---------------------------------------------------------------------------- schedules


def create_schedule(
    store: MetadataStore,
    project: str,
    *,
    name: str,
    pipeline: str,
    cron: str,
    timezone: str = "UTC",
    inputs: dict[str, Any] | None = None,
    concurrency: Concurrency | str = Concurrency.SKIP,
    enabled: bool = True,
    actor: str,
    clock: Clock = utcnow,
) -> Schedule:
    """Add a schedule; its first tick is the first after now in its zone.

    Raises:
        ValidationError: a bad name, cron expression, zone, concurrency or input.
        NotFoundError: no such project or pipeline.
        AlreadyExistsError: the name is taken.
    """
    validate_automation_name(name, "schedule")
    expression = validate_cron(cron)
    validate_timezone(timezone)
    policy = _concurrency(concurrency)
    given = dict(inputs or {})
    with store.session() as session:
        check_inputs(session, project, pipeline, given)
        return schedules.create(
            session,
            project,
            name=name,
            pipeline=pipeline,
            cron=expression,
            timezone=timezone,
            inputs=given,
            concurrency=policy,
            enabled=enabled,
            next_fire_at=next_fire(expression, timezone, clock()),
            actor=actor,
        )


def update_schedule(
    store: MetadataStore,
    project: str,
    name: str,
    *,
    actor: str,
    clock: Clock = utcnow,
    **fields: Any,
) -> Schedule:
    """Change a schedule's ``enabled``, ``cron``, ``timezone``, ``inputs`` or ``concurrency``.

    A new cron or zone, or resuming, recomputes the next tick from now (a paused schedule
    does not catch up on the ticks it missed).
    """
    _refuse_unknown("schedule", fields, SCHEDULE_FIELDS)
    with store.session() as session:
        current = automations.get(session, schedules.KIND, project, name)
        changes: dict[str, Any] = {}
        if fields.get("cron") is not None:
            changes["cron"] = validate_cron(fields["cron"])
        if fields.get("timezone") is not None:
            validate_timezone(fields["timezone"])
            changes["timezone"] = fields["timezone"]
        changes.update(_shared_changes(session, project, current.pipeline, fields))
        resumed = changes.get("enabled") is True and not current.enabled
        if "cron" in changes or "timezone" in changes or resumed:
            changes["next_fire_at"] = next_fire(
                changes.get("cron", current.cron),
                changes.get("timezone", current.timezone),
                clock(),
            )
        return automations.update_(
            session, schedules.KIND, project, name, changes=changes, actor=actor
        )


# ---------------------------------------------------------------------------- triggers


def create_trigger(
    store: MetadataStore,
    project: str,
    *,
    name: str,
    pipeline: str,
    on: TriggerOn | str,
    where: dict[str, Any] | None = None,
    min_rows: int | None = None,
    inputs: dict[str, Any] | None = None,
    concurrency: Concurrency | str = Concurrency.SKIP,
    enabled: bool = True,
    actor: str,
) -> Trigger:
    """Add a trigger; it reacts to events appended from now on. A webhook trigger's answer
    carries its secret, the only time it is shown.

    Raises:
        ValidationError: a bad name, kind, filter key for the kind, ``min_rows``,
            concurrency or input.
        NotFoundError: no such project or pipeline.
        AlreadyExistsError: the name is taken.
    """
    validate_automation_name(name, "trigger")
    kind = _on(on)
    filters = validate_where(kind, dict(where or {}))
    minimum = validate_min_rows(kind, min_rows)
    policy = _concurrency(concurrency)
    given = dict(inputs or {})
    secret = new_secret() if kind == TriggerOn.WEBHOOK else None
    with store.session() as session:
        check_inputs(session, project, pipeline, given)
        made = triggers.create(
            session,
            project,
            name=name,
            pipeline=pipeline,
            on=kind,
            where=filters,
            min_rows=minimum,
            inputs=given,
            concurrency=policy,
            enabled=enabled,
            secret_hash=None if secret is None else hash_secret(secret),
            actor=actor,
        )
    return made.model_copy(update={"secret": secret})


def update_trigger(
    store: MetadataStore, project: str, name: str, *, actor: str, **fields: Any
) -> Trigger:
    """Change a trigger's ``enabled``, ``where``, ``min_rows``, ``inputs`` or
    ``concurrency``. Resuming starts from the newest event: events while paused are not
    replayed."""
    _refuse_unknown("trigger", fields, TRIGGER_FIELDS)
    with store.session() as session:
        current = automations.get(session, triggers.KIND, project, name)
        changes: dict[str, Any] = {}
        if fields.get("where") is not None:
            changes["where"] = validate_where(current.on, dict(fields["where"]))
        if "min_rows" in fields:
            changes["min_rows"] = validate_min_rows(current.on, fields["min_rows"])
        changes.update(_shared_changes(session, project, current.pipeline, fields))
        return triggers.update_(session, project, name, changes=changes, actor=actor)


def check_secret(
    secret: str | None,
    secret_hash: str | None,
    *,
    noun: str = "trigger",
    renew: str = "delete and create the trigger again to get a new one",
) -> None:
    """Refuse (403) a missing secret, or one whose hash is not ``secret_hash``."""
    if not secret:
        raise PermissionDeniedError(
            f"missing secret: send the {noun}'s secret in the X-Loopml-Secret header",
            details={"header": "X-Loopml-Secret"},
        )
    # Compare digests of equal length in constant time, so timing tells nothing.
    if secret_hash is None or not hmac.compare_digest(hash_secret(secret), secret_hash):
        raise PermissionDeniedError(
            f"wrong secret for this {noun} (it is shown once, when the {noun}'s webhook is "
            f"made; {renew})",
            details={"header": "X-Loopml-Secret"},
        )


def webhook_payload(payload: dict[str, Any] | bytes | None) -> dict[str, Any] | None:
    """The payload as a checked JSON object; raw bytes are decoded here, after the secret."""
    if isinstance(payload, bytes):
        if not payload.strip():
            return None
        try:
            payload = loads_strict(payload)
        except ValueError as exc:
            raise ValidationError(
                f"a webhook's body must be a JSON object: {exc}", details={"field": "body"}
            ) from None
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise ValidationError("a webhook's body must be a JSON object", details={"field": "body"})
    if len(json.dumps(payload, allow_nan=False).encode()) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"a webhook's body may be at most {MAX_PAYLOAD_BYTES} bytes as JSON",
            details={"max_bytes": MAX_PAYLOAD_BYTES},
        )
    return payload


def fire_webhook(
    store: MetadataStore,
    trigger_id: str,
    secret: str | None,
    payload: dict[str, Any] | bytes | None = None,
    *,
    clock: Clock = utcnow,
) -> Firing:
    """Fire a webhook trigger called with ``secret``; ``payload`` is kept with the firing.

    The secret is checked before the payload is even decoded (``payload`` may be the raw
    body), so a caller without it learns nothing from how its body is judged.

    Raises:
        NotFoundError: no trigger has this id.
        PermissionDeniedError: the secret is missing or wrong, or the trigger is no webhook.
        ValidationError: the payload is not a JSON object (non-finite numbers included).
        PayloadTooLargeError: the payload is over 64 KiB as JSON.
    """
    with store.session() as session:
        on, secret_hash, _ = triggers.by_id(session, trigger_id)
        check_secret(secret, secret_hash)
        payload = webhook_payload(payload)
        if on != TriggerOn.WEBHOOK.value:
            raise ConflictError(f"trigger {trigger_id} reacts to {on} events, not webhook calls")
        who = firings.owner(session, "trigger", trigger_id, lock=True)
        assert who is not None  # locked above
        if not who.enabled:
            return firings.record(
                session,
                who,
                at=clock(),
                outcome=FiringOutcome.SKIPPED,
                reason=f"trigger {who.name!r} is paused",
                payload=payload,
            )
        return fire(session, who, now=clock(), payload=payload)
