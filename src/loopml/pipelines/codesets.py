"""Codesets as a service: register a version (an uploaded archive, a commit of a repository
on the server), read versions back, and the push webhook that registers each new commit.

A version's files are written to the artifact store first, under a key made of their
content hash (``loopml.core.layout.codeset_archive_key``), then recorded; so a version is
never visible before its files are, and identical content lands on the same key and the
same version. The webhook checks its secret the way a trigger's does
(``automation_service.check_secret``) before it reads the body.

Example:
    >>> register_archive(store, artifacts, settings, "default", "trainer", data,
    ...                  source="./trainer", actor="ada")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loopml.core.codesets import (
    MAX_BRANCH_CHARS,
    Codeset,
    CodesetRegistered,
    CodesetVersion,
    CodesetWebhook,
    push_target,
    validate_codeset_name,
    validate_commit,
)
from loopml.core.errors import ConflictError, PermissionDeniedError, ValidationError
from loopml.core.layout import codeset_archive_key
from loopml.pipelines.automation_service import (
    check_secret,
    hash_secret,
    new_secret,
    webhook_payload,
)
from loopml.settings import CodesetsSettings
from loopml.storage import ArtifactStore
from loopml.storage.codetree import PackedTree, TreeLimits, archive_of, export_commit, read_archive
from loopml.store import MetadataStore, codesets

WEBHOOK_PATH = "/api/v1/codesets/{codeset_id}/push"


@dataclass(frozen=True)
class PushResult:
    """What a push did: ``registered`` (a new version), ``unchanged`` (the commit's tree
    is an existing version) or ``skipped`` (another branch, a tag, a deleted branch)."""

    outcome: str
    codeset: str
    version: int | None = None
    commit: str | None = None
    skipped: str | None = None


def limits(settings: CodesetsSettings) -> TreeLimits:
    """The size limits of a codeset version, from the settings."""
    return TreeLimits(max_bytes=settings.max_bytes, max_files=settings.max_files)


def register_tree(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    name: str,
    tree: PackedTree,
    *,
    source: str,
    actor: str,
) -> CodesetRegistered:
    """Store a packed tree as the codeset's next version (or find the one holding it).

    Raises:
        ValidationError: a bad name, an empty tree.
        NotFoundError: no such project.
    """
    validate_codeset_name(name)
    if not tree.files:
        raise ValidationError(
            f"codeset {name!r}: the tree holds no file (everything is ignored, or the folder "
            "is empty)",
            details={"codeset": name},
        )
    manifest = tree.manifest()
    digest = tree.content_hash()
    with store.session() as session:
        key = codeset_archive_key(codesets.project_id(session, project), digest)
    if not artifacts.exists(key):
        data = archive_of(tree)
        artifacts.write(key, [data])
    new = codesets.NewVersion(
        content_hash=digest, commit=tree.commit, source=source, files=manifest, archive_key=key
    )
    with store.session() as session:
        return codesets.add_version(session, project, name, new, actor=actor)


def register_archive(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: CodesetsSettings,
    project: str,
    name: str,
    data: bytes,
    *,
    commit: str | None,
    source: str,
    actor: str,
) -> CodesetRegistered:
    """Register an uploaded ``.tar`` / ``.tar.gz`` of regular files as a version; the
    files are hashed here (what a client claims about them is not read). ``commit`` is the
    commit the client packed them from, as it says.

    Raises:
        ValidationError: not an archive, a link or another non-file member, a bad name.
        PayloadTooLargeError: over ``codesets.max_bytes`` or ``codesets.max_files``.
    """
    validate_codeset_name(name)
    tree = read_archive(data, limits(settings), f"codeset {name!r}")
    tree.commit = validate_commit(commit)
    return register_tree(store, artifacts, project, name, tree, source=source, actor=actor)


def get(store: MetadataStore, project: str, name: str) -> Codeset:
    """A codeset with its newest version."""
    with store.reading(), store.session() as session:
        return codesets.get(session, project, name)


def list_codesets(store: MetadataStore, project: str) -> list[Codeset]:
    """A project's codesets, by name."""
    with store.reading(), store.session() as session:
        return codesets.list_(session, project)


def versions(store: MetadataStore, project: str, name: str) -> list[CodesetVersion]:
    """A codeset's versions, newest first."""
    with store.reading(), store.session() as session:
        return codesets.versions(session, project, name)


def version(
    store: MetadataStore, project: str, name: str, number: int | None = None
) -> CodesetVersion:
    """One version with its files (the newest by default)."""
    with store.reading(), store.session() as session:
        return codesets.version(session, project, name, number)[0]


def open_archive(
    store: MetadataStore, artifacts: ArtifactStore, project: str, name: str, number: int | None
) -> tuple[CodesetVersion, int, Iterator[bytes]]:
    """A version, its archive's size, and its archive's bytes in chunks."""
    with store.reading(), store.session() as session:
        found, key = codesets.version(session, project, name, number)
    info = artifacts.stat(key)

    def chunks() -> Iterator[bytes]:
        with artifacts.open(key) as handle:
            while block := handle.read(1024 * 1024):
                yield block

    return found, info.size, chunks()


def _allowed_repository(settings: CodesetsSettings, repository: str) -> str:
    if not settings.repository_roots:
        raise PermissionDeniedError(
            "this server reads no repository for codesets: an administrator lists the "
            "folders allowed in the setting codesets.repository_roots",
            details={"setting": "codesets.repository_roots"},
        )
    real = Path(os.path.realpath(repository))
    roots = [Path(os.path.realpath(root)) for root in settings.repository_roots]
    if not any(real.is_relative_to(root) for root in roots):
        raise PermissionDeniedError(
            f"{repository[:200]} is outside the folders codesets may read on this server "
            f"(codesets.repository_roots: {', '.join(settings.repository_roots)[:500]})",
            details={"setting": "codesets.repository_roots"},
        )
    if not (real / ".git").exists() and not (real / "HEAD").is_file():
        raise ValidationError(
            f"{repository[:200]} is no git repository (no .git, not a bare repository)",
            details={"field": "repository"},
        )
    return str(real)


def _check_branch(branch: str | None) -> str | None:
    if branch is None:
        return None
    if not branch or len(branch) > MAX_BRANCH_CHARS or branch.startswith("-") or ".." in branch:
        raise ValidationError(f"invalid branch {branch[:100]!r}", details={"field": "branch"})
    return branch


def set_webhook(
    store: MetadataStore,
    settings: CodesetsSettings,
    project: str,
    name: str,
    *,
    repository: str | None,
    branch: str | None,
    actor: str,
) -> CodesetWebhook | None:
    """Point a codeset's push webhook at a repository on the server (and a branch: pushes
    to others are skipped; none follows every branch), with a new secret, shown once in the
    answer. ``repository`` ``None`` removes the webhook (and answers ``None``).

    Raises:
        PermissionDeniedError: the repository is outside ``codesets.repository_roots``.
        ValidationError: no git repository there, a bad branch.
        NotFoundError: no such codeset.
    """
    if repository is None:
        with store.session() as session:
            codesets.set_webhook(
                session, project, name, repository=None, branch=None, secret_hash=None, actor=actor
            )
        return None
    real = _allowed_repository(settings, repository)
    branch = _check_branch(branch)
    secret = new_secret()
    with store.session() as session:
        made = codesets.set_webhook(
            session,
            project,
            name,
            repository=real,
            branch=branch,
            secret_hash=hash_secret(secret),
            actor=actor,
        )
    return CodesetWebhook(
        codeset=name,
        id=made.id,
        path=WEBHOOK_PATH.format(codeset_id=made.id),
        repository=real,
        branch=branch,
        secret=secret,
    )


def receive_push(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: CodesetsSettings,
    codeset_id: str,
    secret: str | None,
    body: bytes,
) -> PushResult:
    """Register the commit a push event names, read from the codeset's repository.

    The secret (``X-Loopml-Secret``, or GitLab's ``X-Gitlab-Token``) is checked before the
    body is decoded. A push to another branch than the codeset follows, a tag or a deleted
    branch is skipped.

    Raises:
        PermissionDeniedError: a missing or wrong secret.
        ConflictError: the codeset has no repository set.
        ValidationError: not a push event; the commit is not in the repository.
    """
    with store.session() as session:
        target = codesets.webhook_target(session, codeset_id)
    check_secret(
        secret,
        target.secret_hash,
        noun="codeset",
        renew="run `loopml codesets webhook NAME --repository PATH` again for a new one",
    )
    payload = webhook_payload(body) or {}
    if target.repository is None:
        raise ConflictError(f"codeset {target.name!r} reads no repository")
    branch, commit = push_target(payload)

    def skipped(why: str) -> PushResult:
        return PushResult("skipped", target.name, commit=commit, skipped=why)

    if branch is None:
        return skipped("a tag push: codesets follow branches")
    if target.branch is not None and branch != target.branch:
        return skipped(f"a push to {branch!r}; this codeset follows {target.branch!r}")
    if commit is None:
        return skipped(f"branch {branch!r} was deleted")
    tree = export_commit(Path(target.repository), commit, limits(settings))
    made = register_tree(
        store,
        artifacts,
        target.project,
        target.name,
        tree,
        source=f"{target.repository}@{commit}",
        actor=f"webhook:codeset/{target.name}",
    )
    outcome = "registered" if made.created else "unchanged"
    return PushResult(outcome, target.name, version=made.version.version, commit=commit)
