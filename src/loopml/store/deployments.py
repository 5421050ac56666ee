"""Deployments and their revisions; each change is recorded as an event in its transaction.

The control plane (``loopml.deploy``) decides what a deployment serves; this module
only stores it. Events: ``deployment.created``, ``deployment.revision.created``,
``deployment.updated``, ``deployment.rolled_back``, ``deployment.status`` and
``deployment.deleted``, each with the deployment's name as subject.

Besides the domain ``Deployment``, the store keeps which revision plays which role now
(``Roles``): the primary, the canary and the shadow. ``traffic`` follows from them, and a
rollback can make any earlier revision the primary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import Session

from loopml.core.deployments import (
    DEPLOYMENT_NAME_PATTERN,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    Revision,
    validate_deployment_name,
)
from loopml.core.errors import AlreadyExistsError, NotFoundError
from loopml.core.types import Page
from loopml.store import events
from loopml.store._checks import check_actor, check_limit
from loopml.store._errors import add_unique
from loopml.store._named import name_page
from loopml.store.orm import DeploymentRevisionRow, DeploymentRow, EventRow, ProjectRow
from loopml.store.project_lookup import project_row

RECENT_REVISIONS = 20
"""How many of the newest revisions a ``Deployment`` carries (besides those in use); the
whole history is ``revisions()``."""
MAX_MESSAGE = 2000

Role = Literal["primary", "canary", "shadow"]


@dataclass(frozen=True)
class Roles:
    """Which revision is the primary, the canary and the shadow now."""

    primary: int
    canary: int | None = None
    shadow: int | None = None


UpdateEvent = Literal[
    "deployment.updated",
    "deployment.rolled_back",
    "deployment.canary.promoted",
    "deployment.canary.rolled_back",
]
"""The event a change of spec and serving state is recorded as."""


@dataclass(frozen=True)
class NewRevision:
    """A revision to add: ``number`` is the next free one, chosen by the caller."""

    number: int
    model: str
    version: int
    ref: str
    role: Role


def _event(
    session: Session, type: str, project: str, name: str, actor: str, **payload: Any
) -> None:
    events.append(
        session,
        type=type,
        subject=name,
        project=project,
        payload={"deployment": name, **payload},
        actor=actor,
    )


def _traffic_json(traffic: dict[int, int]) -> dict[str, int]:
    return {str(revision): percent for revision, percent in sorted(traffic.items())}


def _revision(row: DeploymentRevisionRow) -> Revision:
    return Revision(
        number=row.number,
        model=row.model,
        version=row.version,
        ref=row.ref,
        role=row.role,
        created_at=row.created_at,
    )


def _shown_revisions(session: Session, row: DeploymentRow) -> list[Revision]:
    in_use = _in_use(row)
    newest = select(DeploymentRevisionRow.number).where(
        DeploymentRevisionRow.deployment_id == row.id
    )
    newest = newest.order_by(DeploymentRevisionRow.number.desc()).limit(RECENT_REVISIONS)
    numbers = set(session.scalars(newest)) | in_use
    rows = session.scalars(
        select(DeploymentRevisionRow)
        .where(
            DeploymentRevisionRow.deployment_id == row.id,
            DeploymentRevisionRow.number.in_(sorted(numbers)),
        )
        .order_by(DeploymentRevisionRow.number)
    )
    return [_revision(r) for r in rows]


def _in_use(row: DeploymentRow) -> set[int]:
    numbers = {int(k) for k in row.traffic}
    if row.shadow_revision is not None:
        numbers.add(row.shadow_revision)
    return numbers


def _shown_revisions_of(
    session: Session, rows: Sequence[DeploymentRow]
) -> dict[str, list[Revision]]:
    """``_shown_revisions`` of many deployments in one query, whatever their number: each
    one's newest ``RECENT_REVISIONS`` (ranked per deployment) and those in use."""
    if not rows:
        return {}
    ranked = (
        select(
            DeploymentRevisionRow.id,
            func.row_number()
            .over(
                partition_by=DeploymentRevisionRow.deployment_id,
                order_by=DeploymentRevisionRow.number.desc(),
            )
            .label("rank"),
        )
        .where(DeploymentRevisionRow.deployment_id.in_([r.id for r in rows]))
        .subquery()
    )
    pairs = [(r.id, number) for r in rows for number in _in_use(r)]
    wanted = select(ranked.c.id).where(ranked.c.rank <= RECENT_REVISIONS)
    conditions = [DeploymentRevisionRow.id.in_(wanted)]
    if pairs:
        conditions.append(
            tuple_(DeploymentRevisionRow.deployment_id, DeploymentRevisionRow.number).in_(pairs)
        )
    found: dict[str, list[Revision]] = {r.id: [] for r in rows}
    query = (
        select(DeploymentRevisionRow)
        .where(or_(*conditions))
        .order_by(DeploymentRevisionRow.deployment_id, DeploymentRevisionRow.number)
    )
    for revision in session.scalars(query):
        found[revision.deployment_id].append(_revision(revision))
    return found


def _to_domain(
    session: Session,
    row: DeploymentRow,
    project: str,
    shown: list[Revision] | None = None,
) -> Deployment:
    return Deployment(
        id=row.id,
        project=project,
        name=row.name,
        spec=DeploymentSpec.model_validate(row.spec),
        status=DeploymentStatus(row.status),
        status_message=row.status_message,
        traffic={int(k): v for k, v in row.traffic.items()},
        shadow_revision=row.shadow_revision,
        canary_revision=row.canary_revision,
        revisions=_shown_revisions(session, row) if shown is None else shown,
        replicas_ready=row.replicas_ready,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _row(session: Session, project: str, name: str) -> DeploymentRow:
    validate_deployment_name(name)
    proj = project_row(session, project)
    row = session.scalars(
        select(DeploymentRow).where(DeploymentRow.project_id == proj.id, DeploymentRow.name == name)
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            f"deployment {name!r} not found in project {project!r}",
            details={"project": project, "deployment": name},
        )
    return row


def _add_revisions(
    session: Session,
    project: str,
    row: DeploymentRow,
    revisions: Sequence[NewRevision],
    actor: str,
) -> None:
    for new in revisions:
        taken = AlreadyExistsError(
            f"revision {new.number} of deployment {row.name!r} already exists (a concurrent "
            "change); retry",
            details={"deployment": row.name, "revision": new.number},
        )
        revision = DeploymentRevisionRow(
            deployment_id=row.id,
            number=new.number,
            model=new.model,
            version=new.version,
            ref=new.ref,
            role=new.role,
        )
        add_unique(session, revision, taken)
        _event(
            session,
            "deployment.revision.created",
            project,
            row.name,
            actor,
            revision=new.number,
            model=new.model,
            version=new.version,
            ref=new.ref,
            role=new.role,
        )


def create(
    session: Session,
    project: str,
    name: str,
    *,
    spec: DeploymentSpec,
    revisions: Sequence[NewRevision],
    roles: Roles,
    traffic: dict[int, int],
    actor: str,
) -> Deployment:
    """Create a PENDING deployment with its first revisions; appends ``deployment.created``
    and one ``deployment.revision.created`` per revision.

    Raises:
        ValidationError: a bad name or actor.
        NotFoundError: no such project.
        AlreadyExistsError: the project has a deployment of this name.
    """
    validate_deployment_name(name)
    check_actor(actor)
    proj = project_row(session, project)
    exists = AlreadyExistsError(
        f"deployment {name!r} already exists in project {project!r}: update it, or delete it first",
        details={"project": project, "deployment": name},
    )
    taken = select(DeploymentRow.id).where(
        DeploymentRow.project_id == proj.id, DeploymentRow.name == name
    )
    if session.scalar(taken) is not None:
        raise exists
    row = DeploymentRow(
        project_id=proj.id,
        name=name,
        spec=spec.model_dump(mode="json"),
        status=DeploymentStatus.PENDING.value,
        status_message="",
        traffic=_traffic_json(traffic),
        primary_revision=roles.primary,
        canary_revision=roles.canary,
        shadow_revision=roles.shadow,
        replicas_ready=0,
        actor=actor,
    )
    add_unique(session, row, exists)
    _event(
        session,
        "deployment.created",
        project,
        name,
        actor,
        spec=row.spec,
        traffic=row.traffic,
        shadow_revision=roles.shadow,
    )
    _add_revisions(session, project, row, revisions, actor)
    return _to_domain(session, row, project)


def get(session: Session, project: str, name: str) -> Deployment:
    """The deployment ``name`` of ``project``; ``NotFoundError`` when absent."""
    return _to_domain(session, _row(session, project, name), project)


def get_with_roles(session: Session, project: str, name: str) -> tuple[Deployment, Roles]:
    """The deployment and which revision plays which role now."""
    row = _row(session, project, name)
    roles = Roles(row.primary_revision, row.canary_revision, row.shadow_revision)
    return _to_domain(session, row, project), roles


def list_(
    session: Session, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[Deployment]:
    """A project's deployments by name, ``limit`` at a time (``cursor``: the previous
    page's ``next_cursor``)."""
    check_limit(limit)
    project_id = project_row(session, project).id
    rows, next_cursor = name_page(
        session,
        DeploymentRow,
        project_id,
        limit=limit,
        cursor=cursor,
        pattern=DEPLOYMENT_NAME_PATTERN,
    )
    shown = _shown_revisions_of(session, rows)
    items = [_to_domain(session, row, project, shown[row.id]) for row in rows]
    return Page[Deployment](items=items, next_cursor=next_cursor)


def list_all(session: Session) -> list[Deployment]:
    """Every deployment of every project (for the reconciler), by project and name."""
    rows = session.execute(
        select(DeploymentRow, ProjectRow.name)
        .join(ProjectRow, DeploymentRow.project_id == ProjectRow.id)
        .order_by(ProjectRow.name, DeploymentRow.name)
    ).tuples()
    found = list(rows)
    shown = _shown_revisions_of(session, [row for row, _ in found])
    return [_to_domain(session, row, project, shown[row.id]) for row, project in found]


def list_in(
    session: Session, projects: Sequence[str], *, limit_each: int, revisions: bool = True
) -> list[Deployment]:
    """The first ``limit_each`` deployments by name of each of ``projects``, by project and
    name, in one query whatever their number; without ``revisions`` each one's ``revisions``
    is left empty (for a list that shows none: a query and most of the reading saved)."""
    ranked = (
        select(
            DeploymentRow.id,
            ProjectRow.name.label("project"),
            func.row_number()
            .over(partition_by=DeploymentRow.project_id, order_by=DeploymentRow.name)
            .label("rank"),
        )
        .join(ProjectRow, DeploymentRow.project_id == ProjectRow.id)
        .where(ProjectRow.name.in_(list(projects)))
        .subquery()
    )
    query = (
        select(DeploymentRow, ranked.c.project)
        .join(ranked, ranked.c.id == DeploymentRow.id)
        .where(ranked.c.rank <= limit_each)
        .order_by(ranked.c.project, DeploymentRow.name)
    )
    found = list(session.execute(query).tuples())
    shown = _shown_revisions_of(session, [row for row, _ in found]) if revisions else {}
    return [_to_domain(session, row, project, shown.get(row.id, [])) for row, project in found]


def revisions(session: Session, project: str, name: str) -> list[Revision]:
    """Every revision of a deployment, oldest first."""
    row = _row(session, project, name)
    query = select(DeploymentRevisionRow).where(DeploymentRevisionRow.deployment_id == row.id)
    return [_revision(r) for r in session.scalars(query.order_by(DeploymentRevisionRow.number))]


def next_revision(session: Session, project: str, name: str) -> int:
    """The number the next revision of a deployment gets."""
    row = _row(session, project, name)
    top = session.scalar(
        select(func.max(DeploymentRevisionRow.number)).where(
            DeploymentRevisionRow.deployment_id == row.id
        )
    )
    return int(top or 0) + 1


def update(
    session: Session,
    project: str,
    name: str,
    *,
    spec: DeploymentSpec,
    revisions: Sequence[NewRevision],
    roles: Roles,
    traffic: dict[int, int],
    actor: str,
    event: UpdateEvent = "deployment.updated",
    **payload: Any,
) -> Deployment:
    """Store a new spec and serving state (new revisions first); appends ``event`` with the
    traffic before and after, plus ``payload``. A change of what is served makes the
    deployment PENDING until the target reports it ready."""
    check_actor(actor)
    row = _row(session, project, name)
    _add_revisions(session, project, row, revisions, actor)
    before = dict(row.traffic)
    after = _traffic_json(traffic)
    serving_changed = before != after or row.shadow_revision != roles.shadow
    row.spec = spec.model_dump(mode="json")
    row.traffic = after
    row.primary_revision = roles.primary
    row.canary_revision = roles.canary
    row.shadow_revision = roles.shadow
    if serving_changed and row.status != DeploymentStatus.FAILED.value:
        row.status = DeploymentStatus.PENDING.value
    session.flush()
    _event(
        session,
        event,
        project,
        name,
        actor,
        from_traffic=before,
        traffic=after,
        shadow_revision=roles.shadow,
        **payload,
    )
    return _to_domain(session, row, project)


def set_status(
    session: Session,
    project: str,
    name: str,
    status: DeploymentStatus,
    message: str,
    replicas_ready: int,
    *,
    actor: str,
) -> bool:
    """Record what the target reports; appends ``deployment.status`` when the status or its
    message changed. Returns whether anything changed."""
    row = _row(session, project, name)
    message = message[:MAX_MESSAGE]
    if (row.status, row.status_message, row.replicas_ready) == (
        status.value,
        message,
        replicas_ready,
    ):
        return False
    before = row.status
    announce = (before, row.status_message) != (status.value, message)
    row.status = status.value
    row.status_message = message
    row.replicas_ready = replicas_ready
    session.flush()
    if announce:
        _event(
            session,
            "deployment.status",
            project,
            name,
            actor,
            status=status.value,
            from_status=before,
            message=message,
            replicas_ready=replicas_ready,
        )
    return True


def delete(session: Session, project: str, name: str, *, actor: str) -> Deployment:
    """Delete a deployment with its revisions; appends ``deployment.deleted``. Returns it as
    it was, so that its target can stop what it runs."""
    check_actor(actor)
    row = _row(session, project, name)
    gone = _to_domain(session, row, project)
    count = session.scalar(
        select(func.count())
        .select_from(DeploymentRevisionRow)
        .where(DeploymentRevisionRow.deployment_id == row.id)
    )
    session.delete(row)
    session.flush()
    _event(session, "deployment.deleted", project, name, actor, revisions=int(count or 0))
    return gone


def latest_event_id(session: Session) -> int:
    """The id of the newest event (0 when there is none): where a follower of the event
    feed starts when it only cares about what happens from now on."""
    return int(session.scalar(select(func.max(EventRow.id))) or 0)
