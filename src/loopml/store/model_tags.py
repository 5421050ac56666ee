"""Tags of registered models and of model versions; each change is recorded as an event.

A tag key is 1 to 250 letters, digits, ``_``, ``.`` or ``-``; a value at most 5000
characters; an owner holds at most ``MAX_TAGS`` tags.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from loopml.core.errors import NotFoundError
from loopml.core.registry import ModelVersion, RegisteredModel, validate_tag
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store._registry import (
    check_tag_room,
    model_row,
    models_to_domain,
    version_row,
    version_to_domain,
)
from loopml.store.orm import ModelTagRow, ModelVersionTagRow


def _event(
    session: Session, type: str, project: str, subject: str, actor: str, **payload: object
) -> None:
    events.append(
        session, type=type, subject=subject, project=project, payload=payload, actor=actor
    )


def set_model_tag(
    session: Session, project: str, name: str, key: str, value: str, *, actor: str
) -> RegisteredModel:
    """Set (add or replace) a model's tag and append ``model.tag.set``."""
    validate_tag(key, value)
    check_actor(actor)
    row = model_row(session, project, name)
    check_tag_room(session, ModelTagRow, ModelTagRow.model_id, row.id, key)
    session.merge(ModelTagRow(model_id=row.id, key=key, value=value))
    session.flush()
    _event(session, "model.tag.set", project, name, actor, model=name, key=key, value=value)
    return models_to_domain(session, project, [row])[0]


def delete_model_tag(session: Session, project: str, name: str, key: str, *, actor: str) -> None:
    """Remove a model's tag and append ``model.tag.removed``; ``NotFoundError`` if absent."""
    validate_tag(key)
    check_actor(actor)
    row = model_row(session, project, name)
    tag = session.get(ModelTagRow, (row.id, key))
    if tag is None:
        raise NotFoundError(
            f"model {name!r} has no tag {key!r}", details={"model": name, "key": key}
        )
    session.delete(tag)
    session.flush()
    _event(session, "model.tag.removed", project, name, actor, model=name, key=key)


def set_version_tag(
    session: Session, project: str, model: str, version: int, key: str, value: str, *, actor: str
) -> ModelVersion:
    """Set a version's tag and append ``model.version.tag.set``."""
    validate_tag(key, value)
    check_actor(actor)
    row = version_row(session, project, model_row(session, project, model), version)
    check_tag_room(session, ModelVersionTagRow, ModelVersionTagRow.version_id, row.id, key)
    session.merge(ModelVersionTagRow(version_id=row.id, key=key, value=value))
    session.flush()
    subject = f"{model}/{version}"
    payload = {"model": model, "version": version, "key": key}
    _event(session, "model.version.tag.set", project, subject, actor, **payload, value=value)
    return version_to_domain(session, row, model, project)


def delete_version_tag(
    session: Session, project: str, model: str, version: int, key: str, *, actor: str
) -> None:
    """Remove a version's tag and append ``model.version.tag.removed``."""
    validate_tag(key)
    check_actor(actor)
    row = version_row(session, project, model_row(session, project, model), version)
    tag = session.get(ModelVersionTagRow, (row.id, key))
    if tag is None:
        raise NotFoundError(
            f"version {version} of model {model!r} has no tag {key!r}",
            details={"model": model, "version": version, "key": key},
        )
    session.delete(tag)
    session.flush()
    payload = {"model": model, "version": version, "key": key}
    _event(session, "model.version.tag.removed", project, f"{model}/{version}", actor, **payload)
