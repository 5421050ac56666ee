"""Registered models, their tags and their aliases; each change is recorded as an event.

Versions live in ``store.model_versions``. Every function takes a ``Session`` from
``MetadataStore.session()``; the change and its event commit or vanish together.

Which version an alias may point at is decided by ``core.promotion`` (the registry asks it);
``move_alias`` records the move it allowed.

Deleting a model that still has versions is refused (``ConflictError``) unless ``force``
is given; a forced delete removes its aliases, versions and tags, never the runs or the
artifacts the versions were built from (those belong to the runs).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loopml.core.errors import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from loopml.core.promotion import AliasMove
from loopml.core.refs import NAME_PATTERN, ModelRef, validate_alias, validate_model_name
from loopml.core.registry import (
    MAX_DESCRIPTION,
    MAX_TAGS,
    ModelVersion,
    RegisteredModel,
    validate_tag,
)
from loopml.core.types import Page
from loopml.store import events
from loopml.store._checks import check_actor, check_limit, check_text
from loopml.store._errors import add_unique
from loopml.store._named import name_page
from loopml.store._registry import (
    model_row,
    models_to_domain,
    version_row,
    version_to_domain,
)
from loopml.store.orm import (
    DeploymentRow,
    ModelAliasRow,
    ModelTagRow,
    ModelVersionRow,
    RegisteredModelRow,
)
from loopml.store.project_lookup import project_row


def _event(
    session: Session, type: str, project: str, name: str, actor: str, **payload: object
) -> None:
    events.append(
        session,
        type=type,
        subject=name,
        project=project,
        payload={"model": name, **payload},
        actor=actor,
    )


def _one(session: Session, project: str, row: RegisteredModelRow) -> RegisteredModel:
    return models_to_domain(session, project, [row])[0]


def create(
    session: Session,
    project: str,
    name: str,
    *,
    description: str = "",
    tags: dict[str, str] | None = None,
    actor: str,
) -> RegisteredModel:
    """Create a registered model and append ``model.created``.

    Raises:
        ValidationError: a bad name, description, tag or actor.
        NotFoundError: no such project.
        AlreadyExistsError: the project has a model of this name.
    """
    validate_model_name(name)
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    tags = tags or {}
    if len(tags) > MAX_TAGS:
        raise ValidationError(
            f"too many tags: {len(tags)} given, at most {MAX_TAGS}",
            details={"field": "tags", "max_items": MAX_TAGS},
        )
    for key, value in tags.items():
        validate_tag(key, value)
    proj = project_row(session, project)
    exists = AlreadyExistsError(
        f"model {name!r} already exists in project {project!r}",
        details={"project": project, "model": name},
    )
    query = select(RegisteredModelRow.id).where(
        RegisteredModelRow.project_id == proj.id, RegisteredModelRow.name == name
    )
    if session.scalar(query) is not None:
        raise exists
    row = RegisteredModelRow(project_id=proj.id, name=name, description=description)
    add_unique(session, row, exists)
    session.add_all(ModelTagRow(model_id=row.id, key=k, value=v) for k, v in tags.items())
    session.flush()
    _event(session, "model.created", project, name, actor, description=description)
    return _one(session, project, row)


def get(session: Session, project: str, name: str) -> RegisteredModel:
    """The registered model ``name`` of ``project``.

    Raises:
        NotFoundError: no such project or model (the message says which).
    """
    return _one(session, project, model_row(session, project, name))


def list_(
    session: Session, project: str, *, limit: int = 100, cursor: str | None = None
) -> Page[RegisteredModel]:
    """A project's models ordered by name, ``limit`` at a time.

    Args:
        cursor: ``next_cursor`` of the previous page; ``None`` for the first page.

    Raises:
        ValidationError: bad ``limit`` or ``cursor``.
        NotFoundError: no such project.
    """
    check_limit(limit)
    project_id = project_row(session, project).id
    rows, next_cursor = name_page(
        session, RegisteredModelRow, project_id, limit=limit, cursor=cursor, pattern=NAME_PATTERN
    )
    return Page[RegisteredModel](
        items=models_to_domain(session, project, rows), next_cursor=next_cursor
    )


def update(
    session: Session, project: str, name: str, *, description: str, actor: str
) -> RegisteredModel:
    """Change a model's description and append ``model.updated``."""
    check_text("description", description, max_length=MAX_DESCRIPTION, allow_empty=True)
    check_actor(actor)
    row = model_row(session, project, name)
    row.description = description
    session.flush()
    _event(session, "model.updated", project, name, actor, description=description)
    return _one(session, project, row)


def rename(
    session: Session, project: str, name: str, new_name: str, *, actor: str
) -> RegisteredModel:
    """Rename a model (its versions, tags, aliases and gate policy follow) and append
    ``model.renamed``.

    Raises:
        ValidationError: a bad new name.
        NotFoundError: no such project or model.
        AlreadyExistsError: the project has a model called ``new_name``.
        ConflictError: a deployment of the project serves the model by its name.
    """
    validate_model_name(new_name)
    check_actor(actor)
    row = model_row(session, project, name, lock=True)
    if new_name == name:
        return _one(session, project, row)
    taken = select(RegisteredModelRow.id).where(
        RegisteredModelRow.project_id == row.project_id, RegisteredModelRow.name == new_name
    )
    if session.scalar(taken) is not None:
        raise AlreadyExistsError(
            f"model {new_name!r} already exists in project {project!r}",
            details={"project": project, "model": new_name},
        )
    serving = _deployments_of(session, row.project_id, name)
    if serving:
        raise ConflictError(
            f"model {name!r} is served by deployment(s) {', '.join(serving)}, which name it: "
            "point them at another model or delete them before renaming it",
            details={"model": name, "deployments": serving},
        )
    row.name = new_name
    session.flush()
    _event(session, "model.renamed", project, new_name, actor, from_name=name)
    return _one(session, project, row)


def _deployments_of(session: Session, project_id: str, name: str) -> list[str]:
    """The project's deployments whose spec names model ``name`` in a reference."""
    rows = session.execute(
        select(DeploymentRow.name, DeploymentRow.spec).where(DeploymentRow.project_id == project_id)
    ).tuples()
    return sorted(d for d, spec in rows if name in _ref_names(spec))


def _ref_names(spec: dict[str, Any]) -> set[str]:
    """The models a deployment spec (``core.deployments.DeploymentSpec``) names: its
    ``model``, ``canary.model`` and ``shadow`` references."""
    canary = spec.get("canary")
    refs = [spec.get("model"), spec.get("shadow"), canary.get("model") if canary else None]
    names: set[str] = set()
    for ref in refs:
        if isinstance(ref, str):
            with contextlib.suppress(ValidationError):
                names.add(ModelRef.parse(ref).name)
    return names


def delete(session: Session, project: str, name: str, *, force: bool = False, actor: str) -> int:
    """Delete a model and append ``model.deleted``; returns how many versions went with it.

    Raises:
        ConflictError: the model has versions and ``force`` is false.
        NotFoundError: no such project or model.
    """
    check_actor(actor)
    row = model_row(session, project, name, lock=True)
    count = session.scalar(
        select(func.count()).select_from(ModelVersionRow).where(ModelVersionRow.model_id == row.id)
    )
    versions = int(count or 0)
    if versions and not force:
        raise ConflictError(
            f"model {name!r} of project {project!r} has {versions} version(s): delete them "
            "first, or pass force=True (the API's ?force=true) to delete them with it",
            details={"project": project, "model": name, "versions": versions},
        )
    # Aliases point at versions with ON DELETE RESTRICT: remove them before the versions.
    session.execute(sql_delete(ModelAliasRow).where(ModelAliasRow.model_id == row.id))
    session.execute(sql_delete(ModelVersionRow).where(ModelVersionRow.model_id == row.id))
    session.delete(row)
    session.flush()
    _event(session, "model.deleted", project, name, actor, versions=versions)
    return versions


def lock(session: Session, project: str, name: str) -> None:
    """Lock model ``name`` until the transaction ends, so moves of its aliases (and the
    numbering of its versions) take turns; ``NotFoundError`` when it is missing."""
    model_row(session, project, name, lock=True)


def move_alias(
    session: Session, project: str, name: str, move: AliasMove, *, actor: str
) -> ModelVersion:
    """Point ``move.alias`` at ``move.version`` (create or move it) and append
    ``model.alias.set``, after ``model.promotion.forced`` when the move overrides the gate.

    This writes what ``core.promotion.decide_alias_move`` allowed and checks none of its
    rules: decide in the same transaction, after ``lock``. The model row is locked here too,
    so concurrent moves of one model's aliases take turns: the last to commit wins, and every
    move is an event whose ``from_version`` is the version the alias really left.

    Raises:
        NotFoundError: no such project, model or version.
    """
    validate_alias(move.alias)
    check_actor(actor)
    model = model_row(session, project, name, lock=True)
    target = version_row(session, project, model, move.version)
    if move.forced is not None:
        _event(
            session,
            "model.promotion.forced",
            project,
            name,
            actor,
            alias=move.alias,
            version=move.version,
            **asdict(move.forced),
        )
    current = session.get(ModelAliasRow, (model.id, move.alias))
    previous: int | None = None
    if current is None:
        session.add(ModelAliasRow(model_id=model.id, alias=move.alias, version_id=target.id))
    else:
        previous = session.scalar(
            select(ModelVersionRow.version).where(ModelVersionRow.id == current.version_id)
        )
        current.version_id = target.id
    session.flush()
    _event(
        session,
        "model.alias.set",
        project,
        name,
        actor,
        alias=move.alias,
        from_version=previous,
        to_version=move.version,
        **move.event_fields(),
    )
    return version_to_domain(session, target, name, project)


def delete_alias(session: Session, project: str, name: str, alias: str, *, actor: str) -> None:
    """Remove ``alias`` and append ``model.alias.removed``; ``NotFoundError`` if absent."""
    validate_alias(alias)
    check_actor(actor)
    model = model_row(session, project, name, lock=True)
    current = session.get(ModelAliasRow, (model.id, alias))
    if current is None:
        raise NotFoundError(
            f"model {name!r} of project {project!r} has no alias {alias!r}",
            details={"project": project, "model": name, "alias": alias},
        )
    number = session.scalar(
        select(ModelVersionRow.version).where(ModelVersionRow.id == current.version_id)
    )
    session.delete(current)
    session.flush()
    _event(session, "model.alias.removed", project, name, actor, alias=alias, version=number)


def delete_all_in_project(session: Session, project_id: str) -> None:
    """Remove every model of a project with its aliases and versions, in that order.

    For ``projects.delete``: left to the cascades from the project row, SQLite may delete a
    run before the versions that point at it (``ON DELETE RESTRICT``) and refuse.
    """
    model_ids = select(RegisteredModelRow.id).where(RegisteredModelRow.project_id == project_id)
    session.execute(sql_delete(ModelAliasRow).where(ModelAliasRow.model_id.in_(model_ids)))
    session.execute(sql_delete(ModelVersionRow).where(ModelVersionRow.model_id.in_(model_ids)))
    session.execute(
        sql_delete(RegisteredModelRow).where(RegisteredModelRow.project_id == project_id)
    )
