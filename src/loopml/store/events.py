"""The event feed: append and read. There is deliberately no update or delete.

Triggers, webhooks, the audit trail and the portal's activity feed all tail this one
table by ascending id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select, text
from sqlalchemy.orm import Session

from loopml.core.clock import as_utc, utcnow
from loopml.core.errors import ValidationError
from loopml.core.names import validate_event_type, validate_project_name
from loopml.core.types import Event, Page
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store.orm import EventRow

MAX_PAYLOAD_BYTES = 64 * 1024
_MAX_ID = 2**63 - 1
# Any constant works; it only has to be the same in every loopml process.
_PG_APPEND_LOCK_KEY = 0x6C6F6F706576  # "loopev"


def _to_domain(row: EventRow) -> Event:
    return Event(
        id=row.id,
        time=row.time,
        project=row.project,
        type=row.type,
        subject=row.subject,
        payload=row.payload,
        actor=row.actor,
    )


def _normalized_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ValidationError(
            f"invalid event payload: expected a JSON object (dict), got {type(payload).__name__}",
            details={"field": "payload"},
        )
    try:
        serialized = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"invalid event payload: it must be JSON-serializable ({exc})",
            details={"field": "payload"},
        ) from exc
    size = len(serialized.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"event payload is {size} bytes as JSON, over the limit of {MAX_PAYLOAD_BYTES}: "
            "store large data as an artifact and put its key in the payload",
            details={"field": "payload", "max_bytes": MAX_PAYLOAD_BYTES},
        )
    # Round-trip so the returned event equals what a later read gives (tuples become
    # lists, integer keys become strings).
    result: dict[str, Any] = json.loads(serialized)
    return result


def append(
    session: Session,
    *,
    type: str,
    subject: str,
    project: str | None,
    payload: dict[str, Any] | None = None,
    actor: str,
) -> Event:
    """Append one event in the session's transaction.

    Args:
        type: dotted lowercase words, ``"project.created"``.
        subject: what changed (a name or reference), at most 300 characters.
        project: the project it belongs to; ``None`` for platform-wide events.
        payload: a JSON object, at most 64 KiB serialized.
        actor: who did it, at most 200 characters.

    Raises:
        ValidationError: any argument is invalid.
    """
    validate_event_type(type)
    check_text("subject", subject, max_length=300)
    if project is not None:
        validate_project_name(project)
    check_actor(actor)
    body = _normalized_payload(payload)
    if session.get_bind().dialect.name == "postgresql":
        # Sequence values are handed out at insert but become visible at commit, so two
        # concurrent writers could commit ids 11 then 10 and a tailer past 11 would never
        # see 10. Holding this lock until commit makes ids commit in order.
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_APPEND_LOCK_KEY})
    row = EventRow(
        time=utcnow(), project=project, type=type, subject=subject, payload=body, actor=actor
    )
    session.add(row)
    session.flush()
    return _to_domain(row)


def _parse_cursor(cursor: str) -> int:
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > _MAX_ID:
        raise ValidationError(
            f"invalid cursor {cursor[:80]!r}: pass the next_cursor of the previous page",
            details={"field": "cursor"},
        )
    return int(cursor)


def _filter_type(query: Select[tuple[EventRow]], type: str) -> Select[tuple[EventRow]]:
    if type.endswith(".*"):
        prefix = validate_event_type(type[:-2]) + "."
        # Event types may contain '_', a LIKE wildcard; autoescape makes it literal.
        return query.where(EventRow.type.startswith(prefix, autoescape=True))
    return query.where(EventRow.type == validate_event_type(type))


def list_(
    session: Session,
    *,
    type: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
    actor: str | None = None,
    newest_first: bool = False,
    projects: Sequence[str] | None = None,
) -> Page[Event]:
    """Events in ascending id order (the order they committed), ``limit`` at a time; in
    descending order with ``newest_first`` (then ``cursor`` pages towards older events).

    Args:
        type: an exact type (``"project.created"``) or a prefix ending in ``.*``
            (``"project.*"``).
        project: only events of this project.
        since: only events at or after this time; naive datetimes are taken as UTC.
        cursor: ``next_cursor`` of the previous page; ``None`` to start at the oldest.
        limit: page size, 1 to 1000.
        actor: only events by this actor, or by its tokens (``user:ada`` also matches
            ``user:ada/token:<id>``).
        projects: only events of these projects.

    Returns:
        One page; ``next_cursor`` is ``None`` on the last page. A tailer resumes from the
        id of the last event it saw.

    Raises:
        ValidationError: a bad filter, ``cursor`` or ``limit``.
    """
    check_limit(limit)
    order = EventRow.id.desc() if newest_first else EventRow.id
    query = select(EventRow).order_by(order).limit(limit + 1)
    if type is not None:
        query = _filter_type(query, type)
    if project is not None:
        query = query.where(EventRow.project == validate_project_name(project))
    if projects is not None:
        query = query.where(EventRow.project.in_([validate_project_name(p) for p in projects]))
    if since is not None:
        query = query.where(EventRow.time >= as_utc(since))
    if cursor is not None:
        after = _parse_cursor(cursor)
        query = query.where(EventRow.id < after if newest_first else EventRow.id > after)
    if actor is not None:
        check_actor(actor)
        query = query.where(
            or_(EventRow.actor == actor, EventRow.actor.startswith(actor + "/", autoescape=True))
        )
    rows = list(session.scalars(query))
    items = [_to_domain(row) for row in rows[:limit]]
    next_cursor = str(items[-1].id) if len(rows) > limit else None
    return Page[Event](items=items, next_cursor=next_cursor)
