"""What a snapshot holds, and the pure rules over snapshots: where a blob lives, which
blobs a set of snapshots references, which snapshots retention drops, which files of a
Delta log belong to a pinned version.

A backup destination is content-addressed: ``blobs/<aa>/<sha256>`` holds each distinct
content once, and ``snapshots/<id>.json`` is one snapshot's manifest naming, for every file
it holds, the path it restores to, its SHA-256 and its size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

FORMAT = 1
SNAPSHOTS = "snapshots"
BLOBS = "blobs"
DATABASE_PATH = "db/loopml.db"
"""The metadata database, always as one SQLite file (see ``loopml.store.snapshot``)."""
ONLINE_PATH = "home/online.db"
SETTINGS_PATH = "settings.json"
CURRENT_PROJECT_PATH = "home/current_project"
"""The project ``loopml use`` chose (``loopml.core.layout.CURRENT_PROJECT_FILE``), if any."""
SECRET_PATH = "secrets/install.key.enc"  # noqa: S105 (a path, not a secret)
ARTIFACTS = "artifacts/"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^\d{8}T\d{12}Z$")
_LOG_ENTRY = re.compile(r"^(\d{20})\.(json|checkpoint(\.\d+\.\d+)?\.parquet|crc)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VaultFile(_Model):
    """One file of a snapshot.

    Attributes:
        path: where it restores to (``db/...``, ``artifacts/<key>``, ``home/...``, ...).
        sha256: its content's hex SHA-256, which is also its blob's name.
        size: its size in bytes.
        modified: the source's modification time (POSIX seconds) when known: a later backup
            trusts the hash of a file with the same path, size and time instead of reading it.
    """

    path: str
    sha256: str = Field(pattern=_SHA256.pattern)
    size: int = Field(ge=0)
    modified: float | None = None


class SecretsInfo(_Model):
    """How the snapshot's secrets are encrypted: a key derived from a passphrase with scrypt
    (``n``, ``r``, ``p`` and the salt), then Fernet (AES-128-CBC with HMAC-SHA256)."""

    kdf: str = "scrypt"
    salt: str
    n: int
    r: int
    p: int


class Manifest(_Model):
    """One snapshot: every file it holds and what the platform was when it was taken."""

    format: int = FORMAT
    id: str = Field(pattern=_ID.pattern)
    created_at: datetime
    loopml_version: str
    schema_revision: str
    source_database: str = Field(description="the dialect backed up: sqlite or postgresql")
    lake: dict[str, int] = Field(
        default_factory=dict, description="each lake table's folder and the version kept"
    )
    secrets: SecretsInfo | None = None
    files: list[VaultFile]
    seconds: float = 0.0
    new_bytes: int = 0
    new_files: int = 0

    @property
    def size(self) -> int:
        """The bytes the snapshot restores (each file counted, shared content or not)."""
        return sum(f.size for f in self.files)


def snapshot_id(now: datetime) -> str:
    """A snapshot's id: its UTC time to the microsecond, so ids sort by age."""
    return now.strftime("%Y%m%dT%H%M%S%fZ")


def is_snapshot_id(text: str) -> bool:
    return bool(_ID.match(text))


def blob_key(sha256: str) -> str:
    """Where a content lives in the destination."""
    if not _SHA256.match(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{BLOBS}/{sha256[:2]}/{sha256}"


def manifest_key(snapshot: str) -> str:
    return f"{SNAPSHOTS}/{snapshot}.json"


def referenced(manifests: Iterable[Manifest]) -> set[str]:
    """Every content hash the given snapshots hold."""
    return {f.sha256 for m in manifests for f in m.files}


def to_prune(manifests: Sequence[Manifest], keep: int) -> list[Manifest]:
    """The snapshots retention drops: all but the ``keep`` newest."""
    if keep < 1:
        raise ValueError("keep at least one snapshot")
    ordered = sorted(manifests, key=lambda m: m.id)
    return ordered[: max(0, len(ordered) - keep)]


def log_version(name: str) -> int | None:
    """The version a Delta log file belongs to (``00000000000000000007.json`` → 7), or
    ``None`` for a name that is not a version's entry, checkpoint or checksum."""
    match = _LOG_ENTRY.match(name)
    return int(match.group(1)) if match else None


def keeps_log_file(name: str, pinned: int) -> bool:
    """Whether a file of a table's ``_delta_log`` belongs to the snapshot of the table at
    version ``pinned``: entries and checkpoints up to it. ``_last_checkpoint`` is decided
    by its content (``checkpoint_version``); anything else (a writer's temporary file) is
    left out."""
    version = log_version(name)
    return version is not None and version <= pinned
