"""Codesets as the rest of loopml sees them: named, versioned, immutable trees of code.

A codeset version is identified by its **content hash**: the SHA-256 of its file list (each
file's path, executable bit and SHA-256, sorted by path). Registering the same tree again
returns the version that already holds it. A version records the git commit it came from
when there is one. Packing files from a folder or a repository is ``loopml.storage.codetree``;
the records are ``loopml.store.codesets``. No I/O here.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loopml.core.errors import NotFoundError, ValidationError

CODESET_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
CODESET_REF_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}(@[1-9][0-9]{0,8})?$")
CODESET_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_SOURCE_CHARS = 1000
MAX_BRANCH_CHARS = 255
ZERO_COMMIT = "0" * 40


class CodesetFile(BaseModel):
    """One file of a version.

    Attributes:
        path: relative, ``/``-separated.
        size: bytes.
        sha256: hex SHA-256 of the content.
        executable: whether its executable bit is set (kept: scripts stay runnable).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str
    executable: bool = False


class CodesetVersion(BaseModel):
    """One immutable version of a codeset."""

    project: str
    codeset: str
    version: int
    content_hash: str = Field(description="SHA-256 of the sorted file list: the identity.")
    commit: str | None = Field(default=None, description="The git commit it came from.")
    source: str = Field(description="Where it came from: a folder, a repository and ref.")
    size: int = Field(description="Total bytes of its files.")
    file_count: int
    files: list[CodesetFile] | None = Field(
        default=None, description="The file list (only when one version is shown)."
    )
    actor: str
    created_at: datetime


class Codeset(BaseModel):
    """A named codeset and where its newest version is."""

    id: str
    project: str
    name: str
    latest_version: int
    repository: str | None = Field(
        default=None, description="A git repository on the server that its webhook reads."
    )
    branch: str | None = Field(default=None, description="The branch its webhook follows.")
    has_webhook: bool = False
    latest: CodesetVersion | None = None
    created_at: datetime


class CodesetRegistered(BaseModel):
    """What registering returns: the version, and whether it is new (false: identical
    content was already registered as that version)."""

    version: CodesetVersion
    created: bool


class CodesetWebhook(BaseModel):
    """A codeset's push webhook: its URL path and secret (the secret is shown once)."""

    codeset: str
    id: str
    path: str
    repository: str
    branch: str | None
    secret: str | None = None


def validate_codeset_name(name: str) -> str:
    """Return ``name`` if it is a valid codeset name, else raise ``ValidationError``."""
    if not isinstance(name, str) or not CODESET_NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            f"invalid codeset name {str(name)[:80]!r}: expected a lowercase letter followed "
            "by up to 62 lowercase letters, digits, '_' or '-' (for example 'mlflow-test')",
            details={"field": "name", "pattern": CODESET_NAME_PATTERN.pattern},
        )
    return name


def parse_codeset_ref(ref: str) -> tuple[str, int | None]:
    """``trainer`` or ``trainer@3`` as ``(name, version)`` (``None``: the newest)."""
    if not isinstance(ref, str) or not CODESET_REF_PATTERN.fullmatch(ref):
        raise ValidationError(
            f"invalid codeset reference {str(ref)[:80]!r}: expected 'NAME' or 'NAME@VERSION' "
            "(for example 'trainer@3')",
            details={"field": "codeset"},
        )
    name, _, number = ref.partition("@")
    return name, int(number) if number else None


def validate_commit(commit: str | None) -> str | None:
    """A full hex commit id (SHA-1 or SHA-256 object format), or ``None``."""
    if commit is None:
        return None
    if not isinstance(commit, str) or not COMMIT_PATTERN.fullmatch(commit):
        raise ValidationError(
            f"invalid commit {str(commit)[:80]!r}: expected a full hex commit id "
            "(40 or 64 lowercase hex digits)",
            details={"field": "commit"},
        )
    return commit


def content_hash(files: list[CodesetFile]) -> str:
    """The identity of a tree: SHA-256 over ``path\\0mode\\0sha256\\n`` of each file, by path.

    Names, times and owners are not part of it, so the same code registered from a folder
    or from a commit of it is the same version.
    """
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.path):
        mode = "755" if item.executable else "644"
        digest.update(f"{item.path}\0{mode}\0{item.sha256}\n".encode())
    return digest.hexdigest()


def split_source(text: str) -> tuple[str, str | None]:
    """``PATH|GIT_URL[@REF]`` as ``(location, ref)``.

    The ref is what follows the last ``@``, unless that holds ``:`` (``git@host:org/repo``
    names no ref) or nothing follows it.
    """
    if len(text) > MAX_SOURCE_CHARS:
        raise ValidationError(f"a codeset source may be at most {MAX_SOURCE_CHARS} characters")
    location, at, ref = text.rpartition("@")
    if not at or not location or not ref or ":" in ref:
        return text, None
    return location, ref


def push_target(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """The branch and new commit of a GitHub- or GitLab-style push event.

    Returns ``(branch, commit)``; ``commit`` is ``None`` for a deleted branch (GitHub and
    GitLab send forty zeros), ``branch`` is ``None`` for a tag push.

    Raises:
        ValidationError: the payload is no push event (no ``ref`` and ``after``).
    """
    ref = payload.get("ref")
    after = payload.get("checkout_sha") or payload.get("after")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise ValidationError(
            "not a push event: expected a JSON object with 'ref' (refs/heads/BRANCH) and "
            "'after' (the new commit), as GitHub and GitLab send",
            details={"field": "body"},
        )
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    if after == ZERO_COMMIT:
        return branch, None
    return branch, validate_commit(after.lower())


def codeset_not_found(project: str, name: str) -> NotFoundError:
    """The error for a codeset the project does not have, with the command that registers one."""
    return NotFoundError(
        f"codeset {name!r} not found in project {project!r}: register it first with "
        "`loopml codesets register NAME PATH`",
        details={"project": project, "codeset": name},
    )
