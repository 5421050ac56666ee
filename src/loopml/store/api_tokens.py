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


def find(
    session: Session,
    *,
    token_id: str | None = None,
    prefix: str | None = None,
    user: str | None = None,
) -> ApiToken:
    """One token, by its id or its prefix; only among ``user``'s when a user is given.

    Raises:
        NotFoundError: no such token (or not ``user``'s).
    """
    return _to_domain(*_require(session, token_id=token_id, prefix=prefix, user=user))


def revoke(
    session: Session,
    at: datetime,
    *,
    token_id: str | None = None,
    prefix: str | None = None,
    user: str | None = None,
    actor: str,
) -> ApiToken:
    """Revoke a token, by its id or its prefix: one of ``user``'s, or anyone's when ``user``
    is ``None`` (a platform admin revoking a leaked token). Revoking twice keeps the first
    time; the ``token.revoked`` event names the token's user, and the actor who revoked it.

    Raises:
        NotFoundError: no such token (or not ``user``'s).
    """
    check_actor(actor)
    row, owner, project = _require(session, token_id=token_id, prefix=prefix, user=user)
    if row.revoked_at is None:
        row.revoked_at = at
        events.append(
            session,
            type="token.revoked",
            subject=row.prefix,
            project=project,
            payload={"user": owner, "name": row.name},
            actor=actor,
        )
    return _to_domain(row, owner, project)


def _require(
    session: Session, *, token_id: str | None, prefix: str | None, user: str | None
) -> tuple[ApiTokenRow, str, str | None]:
    if (token_id is None) == (prefix is None):
        raise ValueError("give a token's id or its prefix, not both or neither")
    query = (
        select(ApiTokenRow, UserRow.name, ProjectRow.name)
        .join(UserRow, UserRow.id == ApiTokenRow.user_id)
        .outerjoin(ProjectRow, ProjectRow.id == ApiTokenRow.project_id)
    )
    if token_id is not None:
        query = query.where(ApiTokenRow.id == token_id)
    else:
        query = query.where(ApiTokenRow.prefix == prefix)
    if user is not None:
        query = query.where(ApiTokenRow.user_id == user_row(session, user).id)
    found = session.execute(query).one_or_none()
    if found is None:
        ref = str(token_id or prefix)
        raise NotFoundError(f"token {ref[:40]!r} not found", details={"token": ref})
    return found[0], found[1], found[2]


def revoke_all(session: Session, user: str, at: datetime, *, actor: str) -> int:
    """Revoke every live token of ``user`` (browser sessions and CLI logins are tokens too):
    one ``tokens.revoked`` event with how many. Returns how many were revoked."""
    check_actor(actor)
    owner = user_row(session, user)
    result = session.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.user_id == owner.id, ApiTokenRow.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        events.append(
            session,
            type="tokens.revoked",
            subject=user,
            project=None,
            payload={"user": user, "count": count},
            actor=actor,
        )
    return count
