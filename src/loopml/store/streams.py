"""Stream sources in the metadata DB: definitions, commit states, consumer reports.

``record_states`` is called in the transaction that records a lake commit (or reconciles
one found in the log), so a stream's committed ids move with its rows, never apart. Changes
to a definition append ``stream.created`` / ``.updated`` / ``.paused`` / ``.resumed`` /
``.deleted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from loopml.core.clock import as_utc, utcnow
from loopml.core.errors import AlreadyExistsError, ConflictError, NotFoundError
from loopml.core.streams import (
    FIXED_ON_UPDATE,
    Stream,
    StreamConfig,
    StreamState,
    StreamStats,
    stream_not_found,
)
from loopml.core.streams import validate_stream_name as _check_name
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store.orm import ProjectRow, StreamRow
from loopml.store.project_lookup import project_row

MAX_ERROR_CHARS = 500
_KEEP_UPDATED_AT = {"updated_at": StreamRow.updated_at}
"""A consumer's reports and commits leave ``updated_at`` alone: it says when the
definition last changed (created, applied, paused, resumed), not when a heartbeat came."""


def _to_domain(row: StreamRow, project: str) -> Stream:
    return Stream(
        id=row.id,
        project=project,
        name=row.name,
        config=StreamConfig.model_validate(row.config),
        paused=row.paused,
        stats=StreamStats(
            messages=row.messages,
            dead_letters=row.dead_letters,
            commits=row.gen,
            last_commit_at=row.last_commit_at,
            status=row.status,
            lag=row.lag,
            rate=row.rate,
            errors=row.errors,
            **_read_error(row.last_error),
            heartbeat_at=row.heartbeat_at,
        ),
        actor=row.actor,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _written_error(stats: StreamStats) -> str | None:
    """The last error as the one column holds it: its time first (ISO 8601, no spaces)."""
    if stats.last_error is None:
        return None
    at = "" if stats.last_error_at is None else as_utc(stats.last_error_at).isoformat() + " "
    return (at + stats.last_error)[:MAX_ERROR_CHARS]


def _read_error(text: str | None) -> dict[str, Any]:
    if text is None:
        return {"last_error": None}
    stamp, _, rest = text.partition(" ")
    try:
        return {"last_error": rest, "last_error_at": as_utc(datetime.fromisoformat(stamp))}
    except ValueError:  # written before errors had their time
        return {"last_error": text}


def _row(session: Session, project: str, name: str) -> StreamRow:
    _check_name(name)
    project_id = project_row(session, project).id
    row = session.scalars(
        select(StreamRow).where(StreamRow.project_id == project_id, StreamRow.name == name)
    ).one_or_none()
    if row is None:
        raise stream_not_found(project, name)
    return row


def _event(session: Session, type: str, project: str, row: StreamRow, actor: str) -> None:
    config = row.config
    payload = {"stream": row.name, "table": config["table"], "source": config["source"]["type"]}
    events.append(
        session, type=type, subject=row.name, project=project, payload=payload, actor=actor
    )


def create(
    session: Session, project: str, name: str, config: StreamConfig, *, actor: str
) -> Stream:
    """Add a stream (checked by the caller); its consumer starts with the next supervisor
    round.

    Raises:
        NotFoundError: no such project.
        AlreadyExistsError: the project has a stream of that name.
    """
    _check_name(name)
    check_actor(actor)
    row = StreamRow(
        project_id=project_row(session, project).id,
        name=name,
        config=config.model_dump(mode="json"),
        paused=False,
        gen=0,
        done=[],
        messages=0,
        dead_letters=0,
        status="stopped",
        errors=0,
        actor=actor,
    )
    add_unique(
        session,
        row,
        AlreadyExistsError(
            f"stream {name!r} already exists in project {project!r}: pick another name",
            details={"project": project, "stream": name},
        ),
    )
    _event(session, "stream.created", project, row, actor)
    return _to_domain(row, project)


def put(
    session: Session, project: str, name: str, config: StreamConfig, *, actor: str
) -> tuple[Stream, Literal["created", "updated", "unchanged"]]:
    """Create the stream, or give an existing one ``config`` (``stream.updated``; its
    consumer sees the change in its next report and restarts with it); equal
    configurations change nothing.

    Raises:
        ConflictError: ``config`` changes a field of ``FIXED_ON_UPDATE``.
        NotFoundError: no such project.
    """
    check_actor(actor)
    project_id = project_row(session, project).id
    row = session.scalars(
        select(StreamRow).where(StreamRow.project_id == project_id, StreamRow.name == name)
    ).one_or_none()
    if row is None:
        return create(session, project, name, config, actor=actor), "created"
    have = StreamConfig.model_validate(row.config)
    if have == config:
        return _to_domain(row, project), "unchanged"
    fixed = [f for f in FIXED_ON_UPDATE if getattr(have, f) != getattr(config, f)]
    if fixed:
        raise ConflictError(
            f"stream {name!r}: {', '.join(fixed)} cannot change (its committed messages are "
            "positions in that source and rows of that table): delete the stream and create "
            "it under another name, or keep the old value",
            details={"project": project, "stream": name, "fields": fixed},
        )
    row.config = config.model_dump(mode="json")
    row.actor = actor
    session.flush()
    _event(session, "stream.updated", project, row, actor)
    return _to_domain(row, project), "updated"


def get(session: Session, project: str, name: str) -> Stream:
    """The stream ``name``; ``NotFoundError`` when it or the project is missing."""
    return _to_domain(_row(session, project, name), project)


def by_id(session: Session, stream_id: str) -> Stream:
    """The stream with this id; ``NotFoundError`` when it was deleted."""
    found = session.execute(
        select(StreamRow, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == StreamRow.project_id)
        .where(StreamRow.id == stream_id)
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"stream {stream_id} not found", details={"stream": stream_id})
    return _to_domain(found[0], found[1])


def list_(session: Session, project: str) -> list[Stream]:
    """A project's streams, by name."""
    project_id = project_row(session, project).id
    rows = session.scalars(
        select(StreamRow).where(StreamRow.project_id == project_id).order_by(StreamRow.name)
    )
    return [_to_domain(row, project) for row in rows]


def every(session: Session) -> list[Stream]:
    """Every stream of every project, by project and name (for ``/metrics``)."""
    rows = session.execute(
        select(StreamRow, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == StreamRow.project_id)
        .order_by(ProjectRow.name, StreamRow.name)
    )
    return [_to_domain(row, project) for row, project in rows]


def all_streams(session: Session) -> list[tuple[str, bool]]:
    """Every stream of every project: ``(id, paused)``, for the supervisor."""
    rows = session.execute(select(StreamRow.id, StreamRow.paused).order_by(StreamRow.id))
    return [(r[0], r[1]) for r in rows]


def set_paused(session: Session, project: str, name: str, paused: bool, *, actor: str) -> Stream:
    """Pause or resume a stream; emits ``stream.paused`` or ``stream.resumed``."""
    check_actor(actor)
    row = _row(session, project, name)
    if row.paused != paused:
        row.paused = paused
        session.flush()
        _event(session, "stream.paused" if paused else "stream.resumed", project, row, actor)
    return _to_domain(row, project)


def delete(session: Session, project: str, name: str, *, actor: str) -> Stream:
    """Remove a stream (its tables stay); its consumer stops with the next supervisor round."""
    check_actor(actor)
    row = _row(session, project, name)
    gone = _to_domain(row, project)
    _event(session, "stream.deleted", project, row, actor)
    session.delete(row)
    session.flush()
    return gone


def record_states(session: Session, states: Iterable[StreamState], at: datetime) -> None:
    """Record the newest of ``states`` per stream, where newer than what its row holds.

    Called in the transaction that records (or reconciles) the lake commits carrying them.
    A deleted stream's states are dropped.
    """
    newest: dict[str, StreamState] = {}
    for state in states:
        have = newest.get(state.stream_id)
        if have is None or state.gen > have.gen:
            newest[state.stream_id] = state
    for state in newest.values():
        session.execute(
            update(StreamRow)
            .where(StreamRow.id == state.stream_id, StreamRow.gen < state.gen)
            .values(
                gen=state.gen,
                done=state.done,
                messages=state.messages,
                dead_letters=state.dead_letters,
                last_commit_at=at,
                **_KEEP_UPDATED_AT,
            )
        )


def committed(session: Session, stream_id: str) -> StreamState:
    """The state the stream's last recorded commit left.

    Raises:
        NotFoundError: the stream was deleted.
    """
    row = session.get(StreamRow, stream_id)
    if row is None:
        raise NotFoundError(f"stream {stream_id} not found", details={"stream": stream_id})
    return StreamState(
        stream_id=row.id,
        gen=row.gen,
        done=row.done,
        messages=row.messages,
        dead_letters=row.dead_letters,
    )


def claim(session: Session, stream_id: str, owner: str, stale_s: float) -> str | None:
    """Make ``owner`` the stream's one consumer, unless another holds it with a heartbeat
    fresher than ``stale_s``; returns that other owner, or ``None`` once claimed.

    Raises:
        NotFoundError: the stream was deleted.
    """
    now = utcnow()
    taken = session.execute(
        update(StreamRow)
        .where(
            StreamRow.id == stream_id,
            or_(
                StreamRow.owner.is_(None),
                StreamRow.owner == owner,
                StreamRow.heartbeat_at.is_(None),
                StreamRow.heartbeat_at < now - timedelta(seconds=stale_s),
            ),
        )
        .values(owner=owner, heartbeat_at=now, **_KEEP_UPDATED_AT)
        .execution_options(synchronize_session=False)
    )
    if _count(taken):
        return None
    holder = session.scalar(select(StreamRow.owner).where(StreamRow.id == stream_id))
    if holder is None:
        raise NotFoundError(f"stream {stream_id} not found", details={"stream": stream_id})
    return holder


def holds(session: Session, stream_id: str, owner: str) -> bool:
    """Whether ``owner`` still holds the stream."""
    return session.scalar(select(StreamRow.owner).where(StreamRow.id == stream_id)) == owner


def release(session: Session, stream_id: str, owner: str) -> None:
    """Let the stream go (a consumer stopping cleanly), if ``owner`` still holds it."""
    session.execute(
        update(StreamRow)
        .where(StreamRow.id == stream_id, StreamRow.owner == owner)
        .values(owner=None, **_KEEP_UPDATED_AT)
        .execution_options(synchronize_session=False)
    )


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def report(session: Session, stream_id: str, stats: StreamStats, owner: str) -> bool:
    """Record what the stream's consumer measured (status, lag, rate, errors) and renew its
    hold; ``False`` when ``owner`` no longer holds the stream (nothing is written)."""
    done = session.execute(
        update(StreamRow)
        .where(StreamRow.id == stream_id, StreamRow.owner == owner)
        .values(
            status=stats.status,
            lag=stats.lag,
            rate=stats.rate,
            errors=stats.errors,
            last_error=_written_error(stats),
            heartbeat_at=utcnow(),
            **_KEEP_UPDATED_AT,
        )
        .execution_options(synchronize_session=False)
    )
    return _count(done) == 1
