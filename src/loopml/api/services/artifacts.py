"""A project's artifacts: user keys mapped under the project's own prefix in the store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import anyio.to_thread

from loopml import projects
from loopml.api.streaming import blocking_chunks
from loopml.core.errors import ValidationError
from loopml.core.keys import validate_key, validate_prefix
from loopml.core.types import Artifact, Page, Project
from loopml.storage import ObjectInfo
from loopml.store import events
from loopml.web.context import AppContext

MAX_PAGE = 1000
# An event's subject holds at most 300 characters; a key may have 1024 (the payload has it all).
_MAX_SUBJECT = 300


def _store_key(project: Project, key: str) -> str:
    return f"{projects.artifacts_prefix(project)}/{validate_key(key)}"


def _info(project: Project, obj: ObjectInfo) -> Artifact:
    key = obj.key[len(projects.artifacts_prefix(project)) + 1 :]
    return Artifact(key=key, size=obj.size, modified=obj.modified, sha256=obj.sha256)


def _record(
    ctx: AppContext, type: str, project: Project, key: str, actor: str, **extra: object
) -> None:
    """The audit event of a change, written once the object store has made it."""
    with ctx.store.session() as session:
        events.append(
            session,
            type=type,
            subject=key[:_MAX_SUBJECT],
            project=project.name,
            payload={"key": key, **extra},
            actor=actor,
        )


async def upload(
    ctx: AppContext, project_name: str, key: str, body: AsyncIterator[bytes], actor: str
) -> Artifact:
    """Stream ``body`` into the artifact ``key`` of a project; atomic, hashed while written.

    The store's writer is blocking, so it runs in a worker thread and pulls each chunk from
    the request on the event loop: memory stays at one chunk whatever the size. Once written,
    an ``artifact.uploaded`` event records it with its actor.
    """
    validate_key(key)
    project = await anyio.to_thread.run_sync(projects.get, ctx.store, project_name)
    store_key = _store_key(project, key)

    chunks = blocking_chunks(body)
    obj = await anyio.to_thread.run_sync(ctx.artifacts.write, store_key, chunks)
    info = _info(project, obj)
    await anyio.to_thread.run_sync(
        lambda: _record(
            ctx, "artifact.uploaded", project, info.key, actor, size=info.size, sha256=info.sha256
        )
    )
    return info


def stat(ctx: AppContext, project_name: str, key: str) -> Artifact:
    """Size, time and hash of one artifact; ``NotFoundError`` when absent."""
    validate_key(key)
    project = projects.get(ctx.store, project_name)
    return _info(project, ctx.artifacts.stat(_store_key(project, key)))


def open_chunks(ctx: AppContext, project_name: str, key: str) -> tuple[Artifact, Iterator[bytes]]:
    """An artifact's info and its content as chunks (read lazily, file closed at the end)."""
    validate_key(key)
    project = projects.get(ctx.store, project_name)
    store_key = _store_key(project, key)
    info = _info(project, ctx.artifacts.stat(store_key))
    return info, ctx.artifacts.iter_bytes(store_key)


def list_(
    ctx: AppContext, project_name: str, prefix: str, limit: int, cursor: str | None
) -> Page[Artifact]:
    """One page of a project's artifacts under ``prefix``, sorted by key."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    project = projects.get(ctx.store, project_name)
    base = projects.artifacts_prefix(project)
    user_prefix = validate_prefix(prefix)
    objects = ctx.artifacts.list(f"{base}/{user_prefix}" if user_prefix else base)
    infos: Iterator[Artifact] = (_info(project, obj) for obj in objects)
    if cursor is not None:
        infos = itertools.dropwhile(lambda info: info.key <= cursor, infos)
    page = list(itertools.islice(infos, limit + 1))
    next_cursor = page[limit - 1].key if len(page) > limit else None
    return Page[Artifact](items=page[:limit], next_cursor=next_cursor)


def delete(ctx: AppContext, project_name: str, key: str, actor: str) -> None:
    """Delete one artifact (an ``artifact.deleted`` event records it); ``NotFoundError`` when
    absent."""
    normalized = validate_key(key)
    project = projects.get(ctx.store, project_name)
    ctx.artifacts.delete(_store_key(project, key))
    _record(ctx, "artifact.deleted", project, normalized, actor)
