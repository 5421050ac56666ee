"""Feature views in the metadata DB: a view, its applied versions, its online state.

The spec is parsed and checked above the store (``loopml.data.features.views``); here a
version is stored with its normalized ``definition``. Every change appends its event in
the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError, NotFoundError
from loopml.core.features import (
    FeatureView,
    FeatureViewApplied,
    FeatureViewSpec,
    MaterializedState,
    validate_view_name,
    view_not_found,
)
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store._named import named_row, version_row
from loopml.store.orm import FeatureViewRow, FeatureViewVersionRow, ProjectRow
from loopml.store.project_lookup import project_row


def _state(row: FeatureViewRow) -> MaterializedState | None:
    if row.materialized_version is None or row.materialized_at is None:
        return None
    return MaterializedState(
        version=row.materialized_version,
        watermark=row.materialized_until,
        rows=row.materialized_rows,
        at=row.materialized_at,
    )


def _view(row: FeatureViewRow, version: FeatureViewVersionRow, project: str) -> FeatureView:
    return FeatureView(
        project=project,
        name=row.name,
        version=version.version,
        latest_version=row.latest_version,
        spec=FeatureViewSpec.model_validate(version.definition),
        spec_hash=version.spec_hash,
        spec_text=version.spec_text,
        actor=version.actor,
        created_at=version.created_at,
        materialized=_state(row),
    )


def _require(session: Session, project: str, name: str, *, lock: bool = False) -> FeatureViewRow:
    validate_view_name(name)
    row = named_row(session, FeatureViewRow, project_row(session, project).id, name, lock=lock)
    if row is None:
        raise view_not_found(project, name)
    return row


def _version_row(session: Session, row: FeatureViewRow, version: int) -> FeatureViewVersionRow:
    found = version_row(
        session, FeatureViewVersionRow, FeatureViewVersionRow.view_id, row.id, version
    )
    if found is None:
        raise NotFoundError(
            f"feature view {row.name!r} has no version {version} (newest: {row.latest_version})",
            details={"view": row.name, "version": version},
        )
    return found


def apply(
    session: Session,
    project: str,
    spec: FeatureViewSpec,
    *,
    spec_text: str,
    spec_hash: str,
    actor: str,
) -> FeatureViewApplied:
    """Store a checked spec as the view's next version (the view is created if new).

    A spec whose normalized hash equals the newest version's is not stored again: that
    version is returned with ``created`` false. Emits ``feature_view.applied`` otherwise.

    Raises:
        ValidationError: a bad name or actor.
        NotFoundError: no such project.
    """
    validate_view_name(spec.name)
    check_actor(actor)
    project_id = project_row(session, project).id
    row = named_row(session, FeatureViewRow, project_id, spec.name, lock=True)
    if row is not None:
        latest = _version_row(session, row, row.latest_version)
        if latest.spec_hash == spec_hash:
            return FeatureViewApplied(view=_view(row, latest, project), created=False)
        row.latest_version += 1
        row.actor = actor
    else:
        row = FeatureViewRow(
            project_id=project_id,
            name=spec.name,
            latest_version=1,
            actor=actor,
            materialized_rows=0,
        )
        exists = ConflictError(
            f"feature view {spec.name!r} was applied concurrently; apply again",
            details={"view": spec.name},
        )
        add_unique(session, row, exists)
    version = FeatureViewVersionRow(
        view_id=row.id,
        version=row.latest_version,
        spec_hash=spec_hash,
        spec_text=spec_text,
        definition=spec.model_dump(mode="json"),
        actor=actor,
    )
    session.add(version)
    session.flush()
    events.append(
        session,
        type="feature_view.applied",
        subject=spec.name,
        project=project,
        payload={"view": spec.name, "version": version.version, "spec_hash": spec_hash},
        actor=actor,
    )
    return FeatureViewApplied(view=_view(row, version, project), created=True)


def get(session: Session, project: str, name: str, version: int | None = None) -> FeatureView:
    """A version of the view (the newest when ``None``).

    Raises:
        NotFoundError: no such project, view or version.
    """
    row = _require(session, project, name)
    number = row.latest_version if version is None else version
    return _view(row, _version_row(session, row, number), project)


def list_(session: Session, project: str) -> list[FeatureView]:
    """A project's views at their newest versions, by name."""
    project_id = project_row(session, project).id
    rows = session.execute(
        select(FeatureViewRow, FeatureViewVersionRow)
        .join(
            FeatureViewVersionRow,
            (FeatureViewVersionRow.view_id == FeatureViewRow.id)
            & (FeatureViewVersionRow.version == FeatureViewRow.latest_version),
        )
        .where(FeatureViewRow.project_id == project_id)
        .order_by(FeatureViewRow.name)
    )
    return [_view(row, version, project) for row, version in rows]


def materialized(session: Session) -> list[tuple[str, str, int]]:
    """Every view the online store holds rows of, in every project: (project, view, the
    version materialized), by project and name."""
    rows = session.execute(
        select(ProjectRow.name, FeatureViewRow.name, FeatureViewRow.materialized_version)
        .join(ProjectRow, ProjectRow.id == FeatureViewRow.project_id)
        .where(FeatureViewRow.materialized_version.is_not(None))
        .order_by(ProjectRow.name, FeatureViewRow.name)
    )
    return [(project, name, int(version)) for project, name, version in rows]


def take_materialize_lease(
    session: Session, project: str, name: str, *, holder: str, now: datetime, lease_s: float
) -> None:
    """Hold the view's materialize lease for ``holder`` until ``now + lease_s`` (taken, or
    renewed when ``holder`` has it).

    Raises:
        ConflictError: another run holds it, and its lease has not lapsed.
        NotFoundError: no such project or view.
    """
    row = _require(session, project, name, lock=True)
    until = row.materializing_until
    if row.materializing_by not in (None, holder) and until is not None and until > now:
        raise ConflictError(
            f"feature view {name!r} is being materialized by another run (its lease runs "
            f"until {until.isoformat()}): wait for it to end, then run again",
            details={"view": name, "lease_until": until.isoformat()},
        )
    row.materializing_by = holder
    row.materializing_until = now + timedelta(seconds=lease_s)
    session.flush()


def release_materialize_lease(session: Session, project: str, name: str, holder: str) -> None:
    """Free the view's lease if ``holder`` has it (a run that failed)."""
    row = _require(session, project, name, lock=True)
    if row.materializing_by == holder:
        row.materializing_by = None
        row.materializing_until = None
        session.flush()


def record_materialized(
    session: Session,
    project: str,
    name: str,
    *,
    version: int,
    watermark: datetime | None,
    rows: int,
    full: bool,
    actor: str,
    holder: str | None = None,
) -> MaterializedState:
    """Record that the online store holds ``version`` of the view up to ``watermark`` (never
    moving the watermark of the same version back), and free ``holder``'s lease.

    Emits ``feature_view.materialized``.

    Raises:
        ConflictError: ``holder`` no longer holds the lease (it lapsed and another run took
            it): nothing is recorded, and the run should be made again.
    """
    check_actor(actor)
    row = _require(session, project, name, lock=True)
    if holder is not None:
        if row.materializing_by != holder:
            raise ConflictError(
                f"this materialize run of feature view {name!r} lost its lease to another "
                "run (it lapsed while this one was writing): nothing was recorded; run it "
                "again",
                details={"view": name},
            )
        row.materializing_by = None
        row.materializing_until = None
    kept = row.materialized_until if row.materialized_version == version else None
    if kept is not None and (watermark is None or watermark < kept):
        # A slower run of the same version that finishes last never moves the watermark
        # back: what it wrote is older-or-equal, and newer-wins kept the newer values.
        watermark = kept
    row.materialized_version = version
    row.materialized_until = watermark
    row.materialized_rows = rows if full else row.materialized_rows + rows
    row.materialized_at = utcnow()
    session.flush()
    events.append(
        session,
        type="feature_view.materialized",
        subject=name,
        project=project,
        payload={
            "view": name,
            "version": version,
            "full": full,
            "rows": rows,
            "watermark": None if watermark is None else watermark.isoformat(),
        },
        actor=actor,
    )
    state = _state(row)
    assert state is not None  # set just above
    return state
