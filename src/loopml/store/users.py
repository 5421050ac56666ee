"""Users and their roles per project in the metadata DB.

Only a password's argon2id hash is stored; hashing and checking happen in ``loopml.auth``.
Changes append ``user.created`` / ``user.updated`` and ``member.set`` / ``member.removed``.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from loopml.core.auth import SERVER_USER, Membership, Role, User, validate_user_name
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store.orm import MembershipRow, ProjectRow, UserRow
from loopml.store.project_lookup import project_row


def _to_domain(row: UserRow) -> User:
    return User(
        id=row.id,
        name=row.name,
        platform_admin=row.platform_admin,
        disabled=row.disabled,
        created_at=row.created_at,
    )


def user_row(session: Session, name: str) -> UserRow:
    """The user called ``name``; ``NotFoundError`` when absent."""
    validate_user_name(name)
    row = session.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"user {name!r} not found", details={"user": name})
    return row


def create(
    session: Session, name: str, password_hash: str, *, platform_admin: bool, actor: str
) -> User:
    """Add a user with an already hashed password.

    Raises:
        ValidationError: a bad name.
        AlreadyExistsError: the name is taken.
    """
    validate_user_name(name)
    check_actor(actor)
    exists = AlreadyExistsError(f"user {name!r} already exists", details={"user": name})
    if session.scalars(select(UserRow.id).where(UserRow.name == name)).first():
        raise exists
    row = UserRow(name=name, password_hash=password_hash, platform_admin=platform_admin)
    add_unique(session, row, exists)
    events.append(
        session,
        type="user.created",
        subject=name,
        project=None,
        payload={"platform_admin": platform_admin},
        actor=actor,
    )
    return _to_domain(row)


def get(session: Session, name: str) -> User:
    """One user, by name."""
    return _to_domain(user_row(session, name))


def password_hash(session: Session, name: str) -> tuple[User, str] | None:
    """The user and its password hash, or ``None`` when there is no such user."""
    row = session.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
    return None if row is None else (_to_domain(row), row.password_hash)


def set_password_hash(session: Session, name: str, password_hash: str) -> None:
    """Replace the stored hash of ``name``'s password (same password, new parameters).

    No event: a re-hash at login changes how the password is kept, not who may do what.
    """
    user_row(session, name).password_hash = password_hash


def list_(session: Session) -> list[User]:
    """Every user, by name."""
    return [_to_domain(r) for r in session.scalars(select(UserRow).order_by(UserRow.name))]


def count_admins(session: Session) -> int:
    """How many enabled platform admins there are (people: not the server's own user)."""
    query = select(func.count()).where(
        UserRow.platform_admin, UserRow.disabled.is_(False), UserRow.name != SERVER_USER
    )
    return int(session.scalar(query) or 0)


def set_disabled(session: Session, name: str, disabled: bool, *, actor: str) -> User:
    """Disable (or enable again) ``name``; ``user.updated`` records the change."""
    check_actor(actor)
    row = user_row(session, name)
    if row.disabled != disabled:
        row.disabled = disabled
        session.flush()
        events.append(
            session,
            type="user.updated",
            subject=name,
            project=None,
            payload={"disabled": disabled},
            actor=actor,
        )
    return _to_domain(row)


def set_role(session: Session, project: str, user: str, role: Role, *, actor: str) -> Membership:
    """Give ``user`` the ``role`` in ``project`` (replacing any it had)."""
    check_actor(actor)
    proj, row = project_row(session, project), user_row(session, user)
    member = session.scalars(
        select(MembershipRow).where(
            MembershipRow.project_id == proj.id, MembershipRow.user_id == row.id
        )
    ).one_or_none()
    if member is None:
        session.add(MembershipRow(project_id=proj.id, user_id=row.id, role=int(role)))
    else:
        member.role = int(role)
    session.flush()
    events.append(
        session,
        type="member.set",
        subject=user,
        project=project,
        payload={"user": user, "role": role.label},
        actor=actor,
    )
    return Membership(user=user, project=project, role=role.label)


def roles_of(session: Session, user_id: str) -> dict[str, int]:
    """``{project name: role}`` for every project the user is a member of."""
    query = (
        select(ProjectRow.name, MembershipRow.role)
        .join(ProjectRow, ProjectRow.id == MembershipRow.project_id)
        .where(MembershipRow.user_id == user_id)
    )
    return {name: int(role) for name, role in session.execute(query)}


def members(session: Session, project: str) -> list[Membership]:
    """A project's members, by user name."""
    proj = project_row(session, project)
    query = (
        select(UserRow.name, MembershipRow.role)
        .join(UserRow, UserRow.id == MembershipRow.user_id)
        .where(MembershipRow.project_id == proj.id)
        .order_by(UserRow.name)
    )
    return [
        Membership(user=name, project=project, role=Role(role).label)
        for name, role in session.execute(query)
    ]


def remove_member(session: Session, project: str, user: str, *, actor: str) -> None:
    """Take ``user``'s role in ``project`` away (``member.removed``).

    Raises:
        NotFoundError: no such project or user, or the user is no member of the project.
    """
    check_actor(actor)
    proj, row = project_row(session, project), user_row(session, user)
    result = session.execute(
        delete(MembershipRow).where(
            MembershipRow.project_id == proj.id, MembershipRow.user_id == row.id
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFoundError(
            f"user {user!r} is no member of project {project!r}",
            details={"user": user, "project": project},
        )
    events.append(
        session,
        type="member.removed",
        subject=user,
        project=project,
        payload={"user": user},
        actor=actor,
    )
