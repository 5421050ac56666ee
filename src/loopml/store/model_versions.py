"""Model versions: numbering, status, description, tags, deletion and ``ModelRef`` resolution.

Versions are numbered 1, 2, 3, ... per model. The number is taken as ``max + 1`` while the
model's row is locked (``FOR UPDATE`` on PostgreSQL; SQLite transactions begin IMMEDIATE and
so hold the write lock), so two concurrent registrations get 1 and 2, never the same number.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from loopml.core.clock import utcnow
from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.core.refs import ModelRef, validate_version_number
from loopml.core.registry import MAX_DESCRIPTION, ModelVersion, VersionStatus
from loopml.core.types import Page
from loopml.store import events
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store._registry import (
    chunks,
    model_row,
    version_row,
    version_to_domain,
    versions_query,
    versions_to_domain,
)
from loopml.store.lineage import LoggedModelInfo
from loopml.store.orm import (
    ModelAliasRow,
    ModelVersionRow,
)

_UNSETTLED = (VersionStatus.PENDING, VersionStatus.PACKAGING)


def _event(session: Session, type: str, v: ModelVersion, actor: str, **payload: object) -> None:
    events.append(
        session,
        type=type,
        subject=f"{v.model}/{v.version}",
        project=v.project,
        payload={"model": v.model, "version": v.version, **payload},
        actor=actor,
    )


def create(
    session: Session,
    project: str,
    model: str,
    logged: LoggedModelInfo,
    *,
    description: str = "",
    actor: str,
    status: VersionStatus = VersionStatus.PENDING,
) -> ModelVersion:
    """Add the next version of ``model`` (status PENDING, or PACKAGING while the server's
    converter makes its package) and append ``model.version.registered``.

    Raises:
        NotFoundError: no such project or model.
        ValidationError: bad description or actor.
    """
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    parent = model_row(session, project, model, lock=True)
    if parent.project_id != logged.project_id:
        raise ValidationError(
            f"run {logged.run_id!r} belongs to another project than model {model!r}",
            details={"run_id": logged.run_id},
        )
    latest = session.scalar(
        select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == parent.id)
    )
    row = ModelVersionRow(
        model_id=parent.id,
        version=(latest or 0) + 1,
        run_id=logged.run_id,
        logged_model_id=logged.id,
        manifest_sha256=logged.manifest_sha256,
        status=status.value,
        status_message="",
        description=description,
        actor=actor,
    )
    session.add(row)
    session.flush()
    version = version_to_domain(session, row, model, project)
    _event(
        session,
        "model.version.registered",
        version,
        actor,
        run_id=logged.run_id,
        path=logged.path,
        manifest_sha256=logged.manifest_sha256,
        status=version.status.value,
    )
    return version


def get(session: Session, project: str, model: str, version: int) -> ModelVersion:
    """Version ``version`` of ``model``; ``NotFoundError`` naming what is missing."""
    parent = model_row(session, project, model)
    return version_to_domain(
        session, version_row(session, project, parent, version), model, project
    )


def list_(
    session: Session,
    project: str,
    model: str,
    *,
    status: VersionStatus | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> Page[ModelVersion]:
    """A model's versions, newest first, ``limit`` at a time.

    Args:
        status: only versions with this status.
        cursor: ``next_cursor`` of the previous page (a version number).
    """
    check_limit(limit)
    parent = model_row(session, project, model)
    query = (
        versions_query()
        .where(ModelVersionRow.model_id == parent.id)
        .order_by(ModelVersionRow.version.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(ModelVersionRow.status == VersionStatus(status).value)
    if cursor is not None:
        query = query.where(ModelVersionRow.version < validate_version_number(cursor))
    records = session.execute(query).tuples().all()
    items = versions_to_domain(session, records[:limit])
    next_cursor = str(items[-1].version) if len(records) > limit else None
    return Page[ModelVersion](items=items, next_cursor=next_cursor)


def set_status(
    session: Session,
    project: str,
    model: str,
    version: int,
    status: VersionStatus,
    message: str = "",
    *,
    actor: str,
) -> ModelVersion:
    """Settle a PENDING or PACKAGING version as READY or FAILED; append
    ``model.version.ready`` or ``model.version.failed``.

    The first verdict stands: a version already settled (a sweeper failed it while its
    verification was still running) is returned unchanged, with no event.
    """
    if status in _UNSETTLED:
        raise ValidationError("a version can only be settled as READY or FAILED")
    check_actor(actor)
    parent = model_row(session, project, model)
    row = version_row(session, project, parent, version)
    changed = session.execute(
        update(ModelVersionRow)
        .where(
            ModelVersionRow.id == row.id,
            ModelVersionRow.status.in_([s.value for s in _UNSETTLED]),
        )
        .values(status=status.value, status_message=message[:MAX_DESCRIPTION], updated_at=utcnow())
        .returning(ModelVersionRow.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    session.refresh(row)
    result = version_to_domain(session, row, model, project)
    if changed is not None:
        kind = "ready" if status == VersionStatus.READY else "failed"
        _event(session, f"model.version.{kind}", result, actor, message=result.status_message)
    return result


def attach_package(
    session: Session, project: str, model: str, version: int, manifest_sha256: str, *, actor: str
) -> ModelVersion:
    """Record the manifest hash of the package the converter made for a PACKAGING version
    (its logged model, ``logged_models.complete``) and append ``model.version.packaged``; the
    version stays PACKAGING until ``set_status`` settles it after verification.

    Raises:
        ConflictError: the version is no longer PACKAGING (it was failed meanwhile).
    """
    parent = model_row(session, project, model)
    row = version_row(session, project, parent, version)
    if row.status != VersionStatus.PACKAGING.value:
        raise ConflictError(f"version {version} of model {model!r} is {row.status}, not PACKAGING")
    row.manifest_sha256 = manifest_sha256
    session.flush()
    result = version_to_domain(session, row, model, project)
    _event(session, "model.version.packaged", result, actor, manifest_sha256=manifest_sha256)
    return result


def packaging(session: Session, *, limit: int = 1000) -> list[ModelVersion]:
    """Versions still PACKAGING, oldest first (``logged_models.packaging_claim`` says who is
    making each one's package)."""
    query = versions_query().where(ModelVersionRow.status == VersionStatus.PACKAGING.value)
    rows = session.execute(query.order_by(ModelVersionRow.created_at).limit(limit)).tuples().all()
    return versions_to_domain(session, rows)


def update_description(
    session: Session, project: str, model: str, version: int, *, description: str, actor: str
) -> ModelVersion:
    """Change a version's description and append ``model.version.updated``."""
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    row = version_row(session, project, model_row(session, project, model), version)
    row.description = description
    session.flush()
    result = version_to_domain(session, row, model, project)
    _event(session, "model.version.updated", result, actor, description=description)
    return result


def delete(session: Session, project: str, model: str, version: int, *, actor: str) -> None:
    """Delete a version (its tags go with it) and append ``model.version.deleted``.

    Raises:
        ConflictError: an alias points at it; the message names the aliases to move first.
    """
    check_actor(actor)
    parent = model_row(session, project, model, lock=True)
    row = version_row(session, project, parent, version)
    aliases = sorted(
        session.scalars(select(ModelAliasRow.alias).where(ModelAliasRow.version_id == row.id))
    )
    if aliases:
        names = ", ".join(repr(a) for a in aliases)
        raise ConflictError(
            f"version {version} of model {model!r} is still pointed at by alias {names}: "
            "move or remove the alias first",
            details={"model": model, "version": version, "aliases": aliases},
        )
    result = version_to_domain(session, row, model, project)
    session.delete(row)
    session.flush()
    _event(session, "model.version.deleted", result, actor, run_id=result.run_id)


def resolve(session: Session, project: str, ref: ModelRef | str) -> ModelVersion:
    """The version ``ref`` names: by number, by alias, or the newest READY one.

    A reference that names its own project (``proj:churn``) is looked up there; otherwise in
    ``project``.

    Raises:
        ValidationError: ``ref`` is not a valid reference.
        NotFoundError: the project, model, version or alias is missing (the message says which).
    """
    parsed = (ModelRef.parse(ref) if isinstance(ref, str) else ref).in_project(project)
    where = parsed.project or project
    parent = model_row(session, where, parsed.name)
    if parsed.version is not None:
        return get(session, where, parsed.name, parsed.version)
    query = versions_query().where(ModelVersionRow.model_id == parent.id)
    if parsed.alias is not None:
        query = query.join(ModelAliasRow, ModelAliasRow.version_id == ModelVersionRow.id).where(
            ModelAliasRow.alias == parsed.alias, ModelAliasRow.model_id == parent.id
        )
        missing = f"model {parsed.name!r} of project {where!r} has no alias {parsed.alias!r}"
    else:
        query = query.where(ModelVersionRow.status == VersionStatus.READY.value)
        query = query.order_by(ModelVersionRow.version.desc()).limit(1)
        missing = (
            f"model {parsed.name!r} of project {where!r} has no READY version: register one, "
            f"or name a version explicitly ('{parsed.name}/1')"
        )
    found = session.execute(query).tuples().first()
    if found is None:
        raise NotFoundError(missing, details={"project": where, "ref": str(parsed)})
    return versions_to_domain(session, [found])[0]


def stale_pending(
    session: Session, *, older_than: timedelta, limit: int = 100
) -> list[ModelVersion]:
    """Versions PENDING for longer than ``older_than``, oldest first, at most ``limit``."""
    query = (
        versions_query()
        .where(
            ModelVersionRow.status == VersionStatus.PENDING.value,
            ModelVersionRow.created_at < utcnow() - older_than,
        )
        .order_by(ModelVersionRow.created_at)
        .limit(limit)
    )
    return versions_to_domain(session, session.execute(query).tuples().all())


def fail_stale_pending(session: Session, *, older_than: timedelta, actor: str) -> int:
    """Mark FAILED every version PENDING for longer than ``older_than`` (its registration
    died midway, RELIABILITY 18) and append ``model.version.failed`` for each; returns how many.
    """
    cutoff = utcnow() - older_than
    query = versions_query().where(
        ModelVersionRow.status == VersionStatus.PENDING.value,
        ModelVersionRow.created_at < cutoff,
    )
    stale = session.execute(query.limit(1000)).tuples().all()
    for row, model, project in stale:
        set_status(
            session,
            project,
            model,
            row.version,
            VersionStatus.FAILED,
            "registration did not finish (the process registering it stopped); register again",
            actor=actor,
        )
    return len(stale)


def newest_in_stages(
    session: Session, model_ids: Sequence[str], stage_aliases: Collection[str]
) -> dict[str, list[ModelVersion]]:
    """MLflow's ``latest_versions`` of many models at once: for each model (by id), the
    versions its ``stage_aliases`` point at and its newest version holding none of them, in
    4 queries a chunk of models. A model with no version has an empty list."""
    found: dict[str, list[ModelVersion]] = {model_id: [] for model_id in model_ids}
    for part in chunks(list(model_ids)):
        staged = select(ModelAliasRow.version_id).where(
            ModelAliasRow.version_id == ModelVersionRow.id,
            ModelAliasRow.alias.in_(list(stage_aliases)),
        )
        unstaged = session.execute(
            select(ModelVersionRow.model_id, func.max(ModelVersionRow.version))
            .where(ModelVersionRow.model_id.in_(part), ~staged.exists())
            .group_by(ModelVersionRow.model_id)
        )
        wanted = {(model_id, number) for model_id, number in unstaged}
        aliased = session.execute(
            select(ModelAliasRow.model_id, ModelVersionRow.version)
            .join(ModelVersionRow, ModelAliasRow.version_id == ModelVersionRow.id)
            .where(ModelAliasRow.model_id.in_(part), ModelAliasRow.alias.in_(list(stage_aliases)))
        )
        wanted.update(aliased.tuples().all())
        if not wanted:
            continue
        numbers = sorted({number for _, number in wanted})
        records = [
            record
            for record in session.execute(
                versions_query().where(
                    ModelVersionRow.model_id.in_(part), ModelVersionRow.version.in_(numbers)
                )
            ).tuples()
            if (record[0].model_id, record[0].version) in wanted
        ]
        for record, version in zip(records, versions_to_domain(session, records), strict=True):
            found[record[0].model_id].append(version)
    return found
