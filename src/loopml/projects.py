"""Projects, across the metadata store and the artifact store: the namespace every other
record lives in. Each function takes the stores and opens its own transaction, so the API,
the CLI and the portal call the same code."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator

from loopml.core import layout
from loopml.core.errors import ValidationError
from loopml.core.keys import validate_key, validate_prefix
from loopml.core.types import Artifact, Page, Project
from loopml.storage import ArtifactStore, ObjectInfo
from loopml.store import MetadataStore, events, projects

# The name these lines were always logged under, when this lived in the API.
log = logging.getLogger("loopml.api")


def artifacts_prefix(project: Project) -> str:
    """Where a project's uploaded artifacts live in the artifact store."""
    return layout.project_artifacts_prefix(project.id)


def create(store: MetadataStore, name: str, *, description: str = "", actor: str) -> Project:
    """Create a project (emits ``project.created``)."""
    with store.session() as session:
        return projects.create(session, name, description=description, actor=actor)


def get(store: MetadataStore, name: str) -> Project:
    """The project named ``name``, or ``NotFoundError``."""
    with store.session() as session:
        return projects.get(session, name)


def list_(store: MetadataStore, *, limit: int = 100, cursor: str | None = None) -> Page[Project]:
    """One page of projects, by name."""
    with store.session() as session:
        return projects.list_(session, limit=limit, cursor=cursor)


def update(store: MetadataStore, name: str, *, description: str, actor: str) -> Project:
    """Change a project's description (emits ``project.updated``)."""
    with store.session() as session:
        return projects.update(session, name, description=description, actor=actor)


def delete(store: MetadataStore, artifacts: ArtifactStore, name: str, *, actor: str) -> None:
    """Delete a project and free its artifacts (emits ``project.deleted``).

    Everything it stored (artifacts, run files) lives under the project's id, not its name,
    so a project created later under the same name never sees them even if freeing the
    storage fails half-way; such leftovers are logged and are garbage to collect, never data
    to serve.
    """
    with store.session() as session:
        project = projects.get(session, name)
        projects.delete(session, name, actor=actor)
    try:
        removed = artifacts.delete_prefix(layout.project_prefix(project.id))
    except Exception:
        log.exception("project %s deleted, but freeing its artifacts failed", name)
    else:
        log.info("project %s deleted with %d artifacts", name, removed)


# A project's artifacts: user keys mapped under the project's own prefix in the store.
MAX_ARTIFACT_PAGE = 1000
# An event's subject holds at most 300 characters; a key may have 1024 (the payload has it all).
_MAX_SUBJECT = 300


def _store_key(project: Project, key: str) -> str:
    return f"{artifacts_prefix(project)}/{validate_key(key)}"


def _info(project: Project, obj: ObjectInfo) -> Artifact:
    key = obj.key[len(artifacts_prefix(project)) + 1 :]
    return Artifact(key=key, size=obj.size, modified=obj.modified, sha256=obj.sha256)


def _record(
    store: MetadataStore, type: str, project: Project, key: str, actor: str, **extra: object
) -> None:
    """The audit event of a change, written once the object store has made it."""
    with store.session() as session:
        events.append(
            session,
            type=type,
            subject=key[:_MAX_SUBJECT],
            project=project.name,
            payload={"key": key, **extra},
            actor=actor,
        )


def write_artifact(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project_name: str,
    key: str,
    chunks: Iterable[bytes],
    *,
    actor: str,
) -> Artifact:
    """Write ``chunks`` as the artifact ``key`` of a project (atomic, hashed while written);
    an ``artifact.uploaded`` event records it with its actor."""
    validate_key(key)
    project = get(store, project_name)
    info = _info(project, artifacts.write(_store_key(project, key), chunks))
    _record(
        store, "artifact.uploaded", project, info.key, actor, size=info.size, sha256=info.sha256
    )
    return info


def artifact_info(
    store: MetadataStore, artifacts: ArtifactStore, project_name: str, key: str
) -> Artifact:
    """Size, time and hash of one artifact; ``NotFoundError`` when absent."""
    validate_key(key)
    project = get(store, project_name)
    return _info(project, artifacts.stat(_store_key(project, key)))


def open_artifact(
    store: MetadataStore, artifacts: ArtifactStore, project_name: str, key: str
) -> tuple[Artifact, Iterator[bytes]]:
    """An artifact's info and its content as chunks (read lazily, file closed at the end)."""
    validate_key(key)
    project = get(store, project_name)
    store_key = _store_key(project, key)
    info = _info(project, artifacts.stat(store_key))
    return info, artifacts.iter_bytes(store_key)


def list_artifacts(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project_name: str,
    prefix: str,
    limit: int,
    cursor: str | None,
) -> Page[Artifact]:
    """One page of a project's artifacts under ``prefix``, sorted by key."""
    if not 1 <= limit <= MAX_ARTIFACT_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_ARTIFACT_PAGE}, got {limit}")
    project = get(store, project_name)
    base = artifacts_prefix(project)
    user_prefix = validate_prefix(prefix)
    objects = artifacts.list(f"{base}/{user_prefix}" if user_prefix else base)
    infos: Iterator[Artifact] = (_info(project, obj) for obj in objects)
    if cursor is not None:
        infos = itertools.dropwhile(lambda info: info.key <= cursor, infos)
    page = list(itertools.islice(infos, limit + 1))
    next_cursor = page[limit - 1].key if len(page) > limit else None
    return Page[Artifact](items=page[:limit], next_cursor=next_cursor)


def delete_artifact(
    store: MetadataStore, artifacts: ArtifactStore, project_name: str, key: str, actor: str
) -> None:
    """Delete one artifact (an ``artifact.deleted`` event records it); ``NotFoundError`` when
    absent."""
    normalized = validate_key(key)
    project = get(store, project_name)
    artifacts.delete(_store_key(project, key))
    _record(store, "artifact.deleted", project, normalized, actor)
