"""Codesets in the metadata DB: a codeset, its immutable versions, its push webhook.

Packing and checking the files is done above the store (``loopml.storage.codetree``, the
service in ``loopml.pipelines.codesets``); here a version is recorded with its file list.
A new version appends ``codeset.versioned`` in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from loopml.core.codesets import (
    CODESET_ID_PATTERN,
    Codeset,
    CodesetFile,
    CodesetRegistered,
    CodesetVersion,
    codeset_not_found,
    validate_codeset_name,
    validate_commit,
)
from loopml.core.errors import ConflictError, NotFoundError, ValidationError
from loopml.store import events
from loopml.store._checks import check_actor
from loopml.store._errors import add_unique
from loopml.store._named import named_row, version_row
from loopml.store.orm import CodesetRow, CodesetVersionRow, ProjectRow
from loopml.store.project_lookup import project_row


@dataclass(frozen=True)
class NewVersion:
    """What a new version is made of (checked by the caller)."""

    content_hash: str
    commit: str | None
    source: str
    files: list[CodesetFile]
    archive_key: str


@dataclass(frozen=True)
class WebhookTarget:
    """What a codeset's push webhook needs: where it is and what it reads."""

    project: str
    name: str
    repository: str | None
    branch: str | None
    secret_hash: str | None


def _version(
    row: CodesetVersionRow, codeset: CodesetRow, project: str, *, files: bool = False
) -> CodesetVersion:
    return CodesetVersion(
        project=project,
        codeset=codeset.name,
        version=row.version,
        content_hash=row.content_hash,
        commit=row.commit,
        source=row.source,
        size=row.size,
        file_count=row.file_count,
        files=[CodesetFile.model_validate(f) for f in row.files] if files else None,
        actor=row.actor,
        created_at=row.created_at,
    )


def _codeset(row: CodesetRow, project: str, latest: CodesetVersionRow | None) -> Codeset:
    return Codeset(
        id=row.id,
        project=project,
        name=row.name,
        latest_version=row.latest_version,
        repository=row.repository,
        branch=row.branch,
        has_webhook=row.webhook_secret_hash is not None,
        latest=None if latest is None else _version(latest, row, project),
        created_at=row.created_at,
    )


def _require(session: Session, project: str, name: str, *, lock: bool = False) -> CodesetRow:
    validate_codeset_name(name)
    row = named_row(session, CodesetRow, project_row(session, project).id, name, lock=lock)
    if row is None:
        raise codeset_not_found(project, name)
    return row


def _version_row(session: Session, row: CodesetRow, version: int) -> CodesetVersionRow:
    found = version_row(session, CodesetVersionRow, CodesetVersionRow.codeset_id, row.id, version)
    if found is None:
        raise NotFoundError(
            f"codeset {row.name!r} has no version {version} (newest: {row.latest_version})",
            details={"codeset": row.name, "version": version},
        )
    return found


def project_id(session: Session, project: str) -> str:
    """The id of ``project`` (its artifacts live under it)."""
    return project_row(session, project).id


def _create(session: Session, project_id: str, name: str, actor: str) -> CodesetRow:
    row = CodesetRow(project_id=project_id, name=name, latest_version=0, actor=actor)
    exists = ConflictError(
        f"codeset {name!r} was registered concurrently; register again",
        details={"codeset": name},
    )
    add_unique(session, row, exists)
    return row


def add_version(
    session: Session, project: str, name: str, new: NewVersion, *, actor: str
) -> CodesetRegistered:
    """Record ``new`` as the codeset's next version (the codeset is created if new).

    Content already registered in this codeset is not stored again: its version is
    returned with ``created`` false. Emits ``codeset.versioned`` otherwise.

    Raises:
        ValidationError: a bad name, commit or actor.
        NotFoundError: no such project.
    """
    validate_codeset_name(name)
    validate_commit(new.commit)
    check_actor(actor)
    project_id_ = project_row(session, project).id
    row = named_row(session, CodesetRow, project_id_, name, lock=True)
    row = row or _create(session, project_id_, name, actor)
    same = session.scalars(
        select(CodesetVersionRow).where(
            CodesetVersionRow.codeset_id == row.id,
            CodesetVersionRow.content_hash == new.content_hash,
        )
    ).one_or_none()
    if same is not None:
        return CodesetRegistered(version=_version(same, row, project, files=True), created=False)
    row.latest_version += 1
    version = CodesetVersionRow(
        codeset_id=row.id,
        version=row.latest_version,
        content_hash=new.content_hash,
        commit=new.commit,
        source=new.source[:1000],
        size=sum(f.size for f in new.files),
        file_count=len(new.files),
        files=[f.model_dump() for f in new.files],
        archive_key=new.archive_key,
        actor=actor,
    )
    session.add(version)
    session.flush()
    payload: dict[str, Any] = {
        "codeset": name,
        "version": version.version,
        "content_hash": new.content_hash,
        "commit": new.commit,
        "source": version.source,
    }
    events.append(
        session,
        type="codeset.versioned",
        subject=name,
        project=project,
        payload=payload,
        actor=actor,
    )
    return CodesetRegistered(version=_version(version, row, project, files=True), created=True)


def get(session: Session, project: str, name: str) -> Codeset:
    """A codeset with its newest version.

    Raises:
        NotFoundError: no such project or codeset.
    """
    row = _require(session, project, name)
    latest = _version_row(session, row, row.latest_version) if row.latest_version else None
    return _codeset(row, project, latest)


def list_(session: Session, project: str) -> list[Codeset]:
    """A project's codesets with their newest versions, by name."""
    found = session.execute(
        select(CodesetRow, CodesetVersionRow)
        .outerjoin(
            CodesetVersionRow,
            (CodesetVersionRow.codeset_id == CodesetRow.id)
            & (CodesetVersionRow.version == CodesetRow.latest_version),
        )
        .where(CodesetRow.project_id == project_row(session, project).id)
        .order_by(CodesetRow.name)
    )
    return [_codeset(row, project, version) for row, version in found]


def versions(session: Session, project: str, name: str) -> list[CodesetVersion]:
    """Every version of a codeset, newest first (without their file lists)."""
    row = _require(session, project, name)
    found = session.scalars(
        select(CodesetVersionRow)
        .where(CodesetVersionRow.codeset_id == row.id)
        .order_by(CodesetVersionRow.version.desc())
    )
    return [_version(v, row, project) for v in found]


def version(
    session: Session, project: str, name: str, number: int | None = None
) -> tuple[CodesetVersion, str]:
    """One version with its file list (the newest when ``number`` is ``None``), and the key
    of its archive.

    Raises:
        NotFoundError: no such project, codeset or version (or no version yet).
    """
    row = _require(session, project, name)
    wanted = row.latest_version if number is None else number
    found = _version_row(session, row, wanted)
    return _version(found, row, project, files=True), found.archive_key


def set_webhook(
    session: Session,
    project: str,
    name: str,
    *,
    repository: str | None,
    branch: str | None,
    secret_hash: str | None,
    actor: str,
) -> Codeset:
    """Set (or, with ``repository`` ``None``, remove) the repository a codeset's webhook
    reads and the hash of its secret. Emits ``codeset.webhook.updated``.

    Raises:
        NotFoundError: no such project or codeset.
    """
    check_actor(actor)
    row = _require(session, project, name, lock=True)
    row.repository = repository
    row.branch = branch
    row.webhook_secret_hash = secret_hash
    session.flush()
    events.append(
        session,
        type="codeset.webhook.updated",
        subject=name,
        project=project,
        payload={"codeset": name, "repository": repository, "branch": branch},
        actor=actor,
    )
    latest = _version_row(session, row, row.latest_version) if row.latest_version else None
    return _codeset(row, project, latest)


def webhook_target(session: Session, codeset_id: str) -> WebhookTarget:
    """What the webhook of the codeset ``codeset_id`` reads.

    Raises:
        ValidationError: not a codeset id.
        NotFoundError: no codeset has this id.
    """
    if not isinstance(codeset_id, str) or not CODESET_ID_PATTERN.fullmatch(codeset_id):
        raise ValidationError("invalid codeset id: expected 32 lowercase hex characters")
    found = session.execute(
        select(CodesetRow, ProjectRow.name)
        .join(ProjectRow, ProjectRow.id == CodesetRow.project_id)
        .where(CodesetRow.id == codeset_id)
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"no codeset has the id {codeset_id}")
    row, project = found
    return WebhookTarget(project, row.name, row.repository, row.branch, row.webhook_secret_hash)
