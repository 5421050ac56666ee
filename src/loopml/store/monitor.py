"""The monitor's rows: reference profiles, windows, cursors and the monitor's lease (data
access only; the policy lives in ``loopml.monitor``).

The lease is one cursor row of the default project (which always exists and cannot be
deleted) under deployment ``""``, a name no deployment can have: one row for the whole
database, with no table of its own. Taking it locks that row (``FOR UPDATE`` on PostgreSQL;
SQLite serializes every write transaction), so two monitors taking it at once are ordered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from loopml.core.clock import as_utc
from loopml.core.errors import ConflictError
from loopml.core.names import DEFAULT_PROJECT
from loopml.store._errors import add_unique
from loopml.store.orm import (
    MonitorCursorRow,
    MonitorWindowRow,
    ProjectRow,
    ReferenceProfileRow,
)
from loopml.store.project_lookup import project_row

LEASE_KEY = "lease"
WindowKey = tuple[str, str, int, str, datetime]
"""deployment, model, version, size, start."""


def get_reference(
    session: Session, project: str, model: str, version: int
) -> dict[str, Any] | None:
    """A version's stored reference (``status``, ``reason``, ``source``, ``profile``)."""
    proj = project_row(session, project)
    row = session.scalars(
        select(ReferenceProfileRow).where(
            ReferenceProfileRow.project_id == proj.id,
            ReferenceProfileRow.model == model,
            ReferenceProfileRow.version == version,
        )
    ).one_or_none()
    if row is None:
        return None
    return {
        "status": row.status,
        "reason": row.reason,
        "source": row.source,
        "profile": row.profile,
        "created_at": row.created_at,
    }


def put_reference(
    session: Session,
    project: str,
    model: str,
    version: int,
    *,
    status: str,
    reason: str,
    source: str,
    profile: dict[str, Any],
    replace: bool = True,
) -> None:
    """Store a version's reference, replacing the one it had unless ``replace`` is off
    (then one stored already stays: the first one wins)."""
    proj = project_row(session, project)
    row = session.scalars(
        select(ReferenceProfileRow).where(
            ReferenceProfileRow.project_id == proj.id,
            ReferenceProfileRow.model == model,
            ReferenceProfileRow.version == version,
        )
    ).one_or_none()
    if row is None:
        row = ReferenceProfileRow(project_id=proj.id, model=model, version=version)
        session.add(row)
    elif not replace:
        return
    row.status, row.reason, row.source, row.profile = status, reason[:500], source[:300], profile
    session.flush()


def get_cursor(session: Session, project: str, deployment: str, key: str) -> dict[str, Any]:
    """A named state of the monitor for a deployment (``{}`` when never set)."""
    proj = project_row(session, project)
    row = session.scalars(
        select(MonitorCursorRow).where(
            MonitorCursorRow.project_id == proj.id,
            MonitorCursorRow.deployment == deployment,
            MonitorCursorRow.key == key,
        )
    ).one_or_none()
    return dict(row.value) if row is not None else {}


def set_cursor(
    session: Session, project: str, deployment: str, key: str, value: dict[str, Any]
) -> None:
    """Set a named state of the monitor for a deployment."""
    proj = project_row(session, project)
    row = session.scalars(
        select(MonitorCursorRow).where(
            MonitorCursorRow.project_id == proj.id,
            MonitorCursorRow.deployment == deployment,
            MonitorCursorRow.key == key,
        )
    ).one_or_none()
    if row is None:
        session.add(
            MonitorCursorRow(project_id=proj.id, deployment=deployment, key=key, value=value)
        )
    else:
        row.value = value
    session.flush()


def _window(row: MonitorWindowRow) -> dict[str, Any]:
    return {
        "deployment": row.deployment,
        "model": row.model,
        "version": row.version,
        "size": row.size,
        "start": row.start,
        "end": row.end,
        "rows": row.rows,
        "labels": row.labels,
        "state": row.state,
        "summary": row.summary,
        "updated_at": row.updated_at,
    }


def get_windows(
    session: Session, project: str, keys: list[WindowKey]
) -> dict[WindowKey, dict[str, Any]]:
    """The stored windows among ``keys`` (one query per deployment and size)."""
    if not keys:
        return {}
    proj = project_row(session, project)
    found: dict[WindowKey, dict[str, Any]] = {}
    for deployment, size in {(k[0], k[3]) for k in keys}:
        starts = {as_utc(k[4]) for k in keys if k[0] == deployment and k[3] == size}
        rows = session.scalars(
            select(MonitorWindowRow).where(
                MonitorWindowRow.project_id == proj.id,
                MonitorWindowRow.deployment == deployment,
                MonitorWindowRow.size == size,
                MonitorWindowRow.start.in_(sorted(starts)),
            )
        )
        for row in rows:
            found[(row.deployment, row.model, row.version, row.size, row.start)] = _window(row)
    return found


def put_window(session: Session, project: str, key: WindowKey, window: dict[str, Any]) -> None:
    """Insert or replace one window's counts and summary."""
    proj = project_row(session, project)
    deployment, model, version, size, start = key
    row = session.scalars(
        select(MonitorWindowRow).where(
            MonitorWindowRow.project_id == proj.id,
            MonitorWindowRow.deployment == deployment,
            MonitorWindowRow.model == model,
            MonitorWindowRow.version == version,
            MonitorWindowRow.size == size,
            MonitorWindowRow.start == start,
        )
    ).one_or_none()
    if row is None:
        row = MonitorWindowRow(
            project_id=proj.id,
            deployment=deployment,
            model=model,
            version=version,
            size=size,
            start=start,
        )
        session.add(row)
    row.end = window["end"]
    row.rows, row.labels = window["rows"], window["labels"]
    row.state, row.summary = window["state"], window["summary"]
    session.flush()


def list_windows(
    session: Session,
    project: str,
    deployment: str,
    *,
    size: str,
    since: datetime | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """A deployment's windows of one size, newest first."""
    proj = project_row(session, project)
    query = (
        select(MonitorWindowRow)
        .where(
            MonitorWindowRow.project_id == proj.id,
            MonitorWindowRow.deployment == deployment,
            MonitorWindowRow.size == size,
        )
        .order_by(MonitorWindowRow.start.desc(), MonitorWindowRow.version.desc())
        .limit(limit)
    )
    if since is not None:
        query = query.where(MonitorWindowRow.start >= as_utc(since))
    return [_window(row) for row in session.scalars(query)]


def newest_window(
    session: Session, project: str, deployment: str, model: str, version: int, *, size: str
) -> dict[str, Any] | None:
    """The newest window of ``size`` of one model version of a deployment (``None``
    without one)."""
    proj = project_row(session, project)
    row = session.scalars(
        select(MonitorWindowRow)
        .where(
            MonitorWindowRow.project_id == proj.id,
            MonitorWindowRow.deployment == deployment,
            MonitorWindowRow.model == model,
            MonitorWindowRow.version == version,
            MonitorWindowRow.size == size,
        )
        .order_by(MonitorWindowRow.start.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else _window(row)


def usage_windows(
    session: Session,
    projects: Sequence[str],
    spans: Sequence[tuple[str, datetime]],
    *,
    deployment: str | None = None,
) -> list[dict[str, Any]]:
    """The usage and replica resources of every window of ``projects`` of each span (a
    size and the earliest start), oldest first, in one query whatever the number of
    projects and deployments. Only those two parts of each summary are read: a window's
    counts and drift figures can be large. ``deployment``: that deployment's only.

    Returns:
        ``project``, ``deployment``, ``size``, ``start``, ``usage`` (``{}`` when absent)
        and ``resources`` (``None`` when absent) of each window.
    """
    if not projects or not spans:
        return []
    window = MonitorWindowRow
    query = (
        select(
            ProjectRow.name,
            window.deployment,
            window.size,
            window.start,
            window.summary["usage"],
            window.summary["resources"],
        )
        .join(ProjectRow, ProjectRow.id == window.project_id)
        .where(
            ProjectRow.name.in_(list(projects)),
            or_(*(and_(window.size == s, window.start >= as_utc(t)) for s, t in spans)),
        )
        .order_by(window.start)
    )
    if deployment is not None:
        query = query.where(window.deployment == deployment)
    return [
        {
            "project": project,
            "deployment": deployment,
            "size": size,
            "start": start,
            "usage": usage or {},
            "resources": resources or None,
        }
        for project, deployment, size, start, usage, resources in session.execute(query)
    ]


def drop_windows_before(session: Session, before: datetime, *, size: str | None = None) -> int:
    """Delete windows (of ``size`` only, when given) that ended before ``before``
    (retention); how many went."""
    query = delete(MonitorWindowRow).where(MonitorWindowRow.end < as_utc(before))
    if size is not None:
        query = query.where(MonitorWindowRow.size == size)
    result = session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


def _lease_row(session: Session) -> MonitorCursorRow | None:
    proj = project_row(session, DEFAULT_PROJECT)
    query = select(MonitorCursorRow).where(
        MonitorCursorRow.project_id == proj.id,
        MonitorCursorRow.deployment == "",
        MonitorCursorRow.key == LEASE_KEY,
    )
    return session.scalars(query.with_for_update()).one_or_none()


def take_lease(
    session: Session, holder: dict[str, Any], *, now: datetime, lease_s: float
) -> dict[str, Any]:
    """Hold the monitor's lease for ``holder`` (named by its ``id``) until ``now + lease_s``
    when it is free, expired or already ``holder``'s (a compare-and-set under the row's lock).

    Returns:
        The lease in force afterwards: ``holder`` with ``expires_at`` (ISO 8601) when taken
        or renewed, the other holder's otherwise (``{}`` when free).

    Raises:
        ConflictError: another monitor created the lease first, in this very moment; retry.
    """
    row = _lease_row(session)
    held = dict(row.value) if row is not None else {}
    expires = held.get("expires_at")
    free = not held.get("id") or expires is None or as_utc(datetime.fromisoformat(expires)) <= now
    if not free and held["id"] != holder["id"]:
        return held
    value = {**holder, "expires_at": (now + timedelta(seconds=lease_s)).isoformat()}
    if row is None:
        project_id = project_row(session, DEFAULT_PROJECT).id
        fresh = MonitorCursorRow(project_id=project_id, deployment="", key=LEASE_KEY, value=value)
        add_unique(session, fresh, ConflictError("another monitor took the lease; retry"))
    else:
        row.value = value
        session.flush()
    return value


def holds_lease(session: Session, holder_id: str) -> bool:
    """Whether ``holder_id`` holds the lease, expired or not (nobody took it over). The row
    stays locked until the transaction ends, so no one takes it over before this
    transaction's writes are committed: the fence of the monitor's writes."""
    row = _lease_row(session)
    return row is not None and row.value.get("id") == holder_id


def release_lease(session: Session, holder_id: str) -> bool:
    """Free the lease if ``holder_id`` holds it; whether it did."""
    row = _lease_row(session)
    if row is None or row.value.get("id") != holder_id:
        return False
    row.value = {}
    session.flush()
    return True


SHARE_PREFIX = "share:"


def add_share(session: Session, holder_id: str, seq: int, value: dict[str, Any]) -> None:
    """Leave what a monitor that does not hold the lease counted this round (its gateway's
    failed requests and callers, its replicas' samples) for the holder to fold in: a row of
    its own under deployment ``""``, so writers never contend on one row."""
    project_id = project_row(session, DEFAULT_PROJECT).id
    key = f"{SHARE_PREFIX}{holder_id}:{seq}"
    session.add(MonitorCursorRow(project_id=project_id, deployment="", key=key, value=value))
    session.flush()


def take_shares(session: Session, limit: int = 1000) -> list[dict[str, Any]]:
    """The shares other monitors left, oldest first, deleted as they are read (by id: one
    added meanwhile stays for the next round)."""
    proj = project_row(session, DEFAULT_PROJECT)
    found = list(
        session.scalars(
            select(MonitorCursorRow)
            .where(
                MonitorCursorRow.project_id == proj.id,
                MonitorCursorRow.deployment == "",
                MonitorCursorRow.key.startswith(SHARE_PREFIX, autoescape=True),
            )
            .order_by(MonitorCursorRow.created_at)
            .limit(limit)
        )
    )
    values = [dict(row.value) for row in found]
    if found:
        session.execute(
            delete(MonitorCursorRow).where(MonitorCursorRow.id.in_([r.id for r in found]))
        )
    return values
