"""Putting a backup's files into the vault: each content hashed, stored once, and listed
in the snapshot's files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from loopml.backup.manifest import ARTIFACTS, Manifest, VaultFile
from loopml.backup.vault import BackupVault
from loopml.core.errors import ArtifactIntegrityError, NotFoundError
from loopml.storage import ArtifactStore, ObjectInfo

_CHUNK = 1024 * 1024


class Reporter(Protocol):
    """Where a long backup or restore says how far it got (the CLI's progress bars)."""

    def begin(self, what: str, total: int | None) -> None: ...

    def advance(self, count: int = 1) -> None: ...


class QuietReporter:
    """A reporter that says nothing."""

    def begin(self, what: str, total: int | None) -> None:
        return None

    def advance(self, count: int = 1) -> None:
        return None


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _digest(chunks: Iterable[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


@dataclass
class Copier:
    """Adds files to one snapshot, storing only the contents the vault lacks.

    Attributes:
        known: the contents already in the vault (hash to size).
        trusted: hashes of the previous snapshot's files by (path, size, modified): a file
            unchanged since is not read again.
    """

    vault: BackupVault
    known: dict[str, int]
    trusted: dict[tuple[str, int, float], str]
    files: list[VaultFile] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    new_bytes: int = 0
    new_files: int = 0

    @classmethod
    def for_vault(cls, vault: BackupVault, previous: Manifest | None) -> Copier:
        trusted = {
            (f.path, f.size, f.modified): f.sha256
            for f in (previous.files if previous else [])
            if f.modified is not None
        }
        return cls(vault, vault.blobs(), trusted)

    def _store(self, sha: str, size: int, chunks: Iterable[bytes]) -> None:
        if sha in self.known:
            return
        self.vault.put(sha, chunks)
        self.known[sha] = size
        self.new_bytes += size
        self.new_files += 1

    def add_bytes(self, path: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        self._store(sha, len(data), [data])
        self.files.append(VaultFile(path=path, sha256=sha, size=len(data)))

    def add_file(self, path: str, source: Path) -> None:
        sha, size = _digest(_file_chunks(source))
        self._store(sha, size, _file_chunks(source))
        self.files.append(VaultFile(path=path, sha256=sha, size=size))

    def add_object(self, artifacts: ArtifactStore, info: ObjectInfo) -> None:
        """Add an artifact store object; one deleted meanwhile is noted in ``vanished``."""
        path = ARTIFACTS + info.key
        modified = info.modified.timestamp()
        sha = info.sha256 or self.trusted.get((path, info.size, modified))
        size = info.size
        for attempt in (1, 2):
            try:
                if sha is None or sha not in self.known:
                    sha, size = _digest(artifacts.iter_bytes(info.key))
                    self._store(sha, size, artifacts.iter_bytes(info.key))
                break
            except NotFoundError:
                self.vanished.append(info.key)
                return
            except ArtifactIntegrityError:
                # Replaced between the two reads: hash the new content once more.
                if attempt == 2:
                    raise
                sha = None
        assert sha is not None
        self.files.append(VaultFile(path=path, sha256=sha, size=size, modified=modified))
