"""A run's files in the artifact store, under ``core.layout.run_artifacts_prefix``, and the
models it logged.

A logged model is recorded only once its package is stored: the manifest must be there and
hash to the SHA-256 given, so no row ever points at a missing or different package.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from loopml.core import layout
from loopml.core.errors import ArtifactIntegrityError, NotFoundError, ValidationError
from loopml.core.keys import join_key, validate_key, validate_prefix
from loopml.core.runs import LoggedModel
from loopml.core.types import Artifact, Page
from loopml.storage import ArtifactStore, ObjectInfo
from loopml.store import MetadataStore, experiments, logged_models, runs

# The manifest file of a package (loopml.packaging.MANIFEST_FILE, not imported here:
# packaging pulls in the ML stack, and recording a model only needs the name).
MANIFEST_FILE = "loopml-model.json"
MAX_PAGE = 1000


def run_root(store: MetadataStore, project: str, run_id: str) -> str:
    """Where a run's artifacts live; ``NotFoundError`` if the run is not in the project."""
    with store.session() as session:
        runs.require(session, project, run_id)
        project_id = experiments.project_id(session, project)
    return layout.run_artifacts_prefix(project_id, run_id)


def _artifact(root: str, obj: ObjectInfo) -> Artifact:
    key = obj.key[len(root) + 1 :]
    return Artifact(key=key, size=obj.size, modified=obj.modified, sha256=obj.sha256)


def write(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    run_id: str,
    path: str,
    chunks: Iterable[bytes],
) -> Artifact:
    """Stream ``chunks`` into the run's artifact ``path``: atomic, hashed while written."""
    validate_key(path)
    root = run_root(store, project, run_id)
    return _artifact(root, artifacts.write(join_key(root, path), chunks))


def stat(
    store: MetadataStore, artifacts: ArtifactStore, project: str, run_id: str, path: str
) -> Artifact:
    """Size, time and hash of one of the run's artifacts; ``NotFoundError`` when absent."""
    validate_key(path)
    root = run_root(store, project, run_id)
    return _artifact(root, artifacts.stat(join_key(root, path)))


def open_chunks(
    store: MetadataStore, artifacts: ArtifactStore, project: str, run_id: str, path: str
) -> tuple[Artifact, Iterator[bytes]]:
    """One artifact's info and its content as lazily read chunks."""
    validate_key(path)
    root = run_root(store, project, run_id)
    key = join_key(root, path)
    return _artifact(root, artifacts.stat(key)), artifacts.iter_bytes(key)


def list_(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    run_id: str,
    *,
    prefix: str = "",
    limit: int = 100,
    cursor: str | None = None,
) -> Page[Artifact]:
    """One page of the run's artifacts under the folder ``prefix``, by path."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"invalid limit {limit!r}: expected an integer from 1 to {MAX_PAGE}")
    root = run_root(store, project, run_id)
    folder = validate_prefix(prefix)
    infos: Iterator[Artifact] = (
        _artifact(root, obj) for obj in artifacts.list(join_key(root, folder) if folder else root)
    )
    if cursor is not None:
        infos = itertools.dropwhile(lambda info: info.key <= cursor, infos)
    page = list(itertools.islice(infos, limit + 1))
    next_cursor = page[limit - 1].key if len(page) > limit else None
    return Page[Artifact](items=page[:limit], next_cursor=next_cursor)


def _check_manifest(artifacts: ArtifactStore, root: str, path: str, sha256: str) -> None:
    key = join_key(root, path, MANIFEST_FILE)
    try:
        digest = hashlib.sha256()
        for chunk in artifacts.iter_bytes(key):
            digest.update(chunk)
    except NotFoundError as exc:
        raise NotFoundError(
            f"no model package at {path!r}: upload its files (with {MANIFEST_FILE}) as run "
            "artifacts before recording it",
            details={"path": path},
        ) from exc
    if digest.hexdigest() != sha256:
        raise ArtifactIntegrityError(
            f"the stored {path}/{MANIFEST_FILE} hashes to {digest.hexdigest()}, not {sha256}: "
            "upload the package again",
            details={"path": path},
        )


def record_model(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    run_id: str,
    *,
    path: str,
    flavor: str,
    format: str,
    manifest_sha256: str,
    signature: dict[str, Any],
    summary: dict[str, Any] | None = None,
) -> LoggedModel:
    """Record the model package the run stored at artifact folder ``path``.

    Raises:
        NotFoundError: no such run, or no manifest at ``path``.
        ArtifactIntegrityError: the stored manifest does not hash to ``manifest_sha256``.
        AlreadyExistsError: the run already logged a model at ``path``.
    """
    validate_key(path)
    root = run_root(store, project, run_id)
    _check_manifest(artifacts, root, path, manifest_sha256)
    with store.session() as session:
        return logged_models.record(
            session,
            project,
            run_id,
            path=path,
            flavor=flavor,
            format=format,
            manifest_sha256=manifest_sha256,
            signature=signature,
            summary=summary,
        )


def list_models(store: MetadataStore, project: str, run_id: str) -> list[LoggedModel]:
    """The models a run logged."""
    with store.session() as session:
        return logged_models.list_for_run(session, project, run_id)
