"""API tokens in the metadata DB: each stored as its public prefix and a hash, never whole.

The caller (``loopml.auth.tokens``) makes the token and its hash; this module keeps rows.
Creating and revoking append ``token.created`` / ``token.revoked`` (never the token).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from loopml.core.auth import ApiToken, Role
from loopml.core.errors import NotFoundError
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store.orm import ApiTokenRow, ProjectRow, UserRow
from loopml.store.users import user_row


def _to_domain(row: ApiTokenRow, user: str, project: str | None) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        user=user,
        prefix=row.prefix,
        project=project,
        role=Role(row.role).label,
        resource=row.resource,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        created_at=row.created_at,
    )


def create(
    session: Session,
    *,
    user: str,
    name: str,
    prefix: str,
    token_hash: str,
    project_id: str | None,
    project: str | None,
    role: Role,
    resource: str | None,
    expires_at: datetime | None,
    actor: str,
) -> ApiToken:
    """Store a new token's prefix and hash."""
    check_actor(actor)
    owner = user_row(session, user)
    row = ApiTokenRow(
        user_id=owner.id,
        name=name,
        prefix=prefix,
        token_hash=token_hash,
        project_id=project_id,
        role=int(role),
        resource=resource,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    events.append(
        session,
        type="token.created",
        subject=prefix,
        project=project,
        payload={"user": user, "name": name, "role": role.label, "resource": resource},
        actor=actor,
    )
    return _to_domain(row, user, project)


def by_prefix(session: Session, prefix: str) -> tuple[ApiTokenRow, UserRow, str | None] | None:
    """The token with this prefix, its user and its project's name; ``None`` if none."""
    query = (
        select(ApiTokenRow, UserRow, ProjectRow.name)
        .join(UserRow, UserRow.id == ApiTokenRow.user_id)
        .outerjoin(ProjectRow, ProjectRow.id == ApiTokenRow.project_id)
        .where(ApiTokenRow.prefix == prefix)
    )
    found = session.execute(query).one_or_none()
    return None if found is None else (found[0], found[1], found[2])


def touch(session: Session, token_id: str, at: datetime) -> None:
    """Record that the token was used at ``at``."""
    session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used_at=at))


def list_(session: Session, user: str) -> list[ApiToken]:
    """A user's tokens, newest first (revoked and expired ones included)."""
    owner = user_row(session, user)
    query = (
        select(ApiTokenRow, ProjectRow.name)
        .outerjoin(ProjectRow, ProjectRow.id == ApiTokenRow.project_id)
        .where(ApiTokenRow.user_id == owner.id)
        .order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id)
    )
    return [_to_domain(row, user, project) for row, project in session.execute(query)]


def revoke(session: Session, user: str, token_id: str, at: datetime, *, actor: str) -> ApiToken:
    """Revoke one of ``user``'s tokens (revoking twice keeps the first time).

    Raises:
        NotFoundError: the user has no token with this id.
    """
    owner = user_row(session, user)
    found = session.execute(
        select(ApiTokenRow, ProjectRow.name)
        .outerjoin(ProjectRow, ProjectRow.id == ApiTokenRow.project_id)
        .where(ApiTokenRow.id == token_id, ApiTokenRow.user_id == owner.id)
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"token {token_id[:40]!r} not found", details={"token": token_id})
    row, project = found
    if row.revoked_at is None:
        row.revoked_at = at
        events.append(
            session,
            type="token.revoked",
            subject=row.prefix,
            project=project,
            payload={"user": user, "name": row.name},
            actor=actor,
        )
    return _to_domain(row, user, project)
