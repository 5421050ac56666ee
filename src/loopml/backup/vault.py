"""``BackupVault``: a backup destination (a folder or an S3 prefix, through the artifact
store interface) holding content-addressed blobs and one manifest per snapshot."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pydantic import ValidationError as PydanticValidationError

from loopml.backup.manifest import (
    BLOBS,
    SNAPSHOTS,
    Manifest,
    blob_key,
    manifest_key,
    referenced,
    to_prune,
)
from loopml.core.errors import ArtifactIntegrityError, NotFoundError
from loopml.storage import ArtifactStore


@dataclass(frozen=True)
class Pruned:
    """What retention removed."""

    snapshots: list[str]
    blobs: int
    bytes: int


class BackupVault:
    """Blobs and manifests in one destination store.

    Args:
        store: the destination, opened at the backup's root.
    """

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    @property
    def uri(self) -> str:
        return self.store.uri

    def blobs(self) -> dict[str, int]:
        """Every content held, with its size."""
        return {info.key.rsplit("/", 1)[-1]: info.size for info in self.store.list(BLOBS)}

    def put(self, sha256: str, chunks: Iterable[bytes]) -> None:
        """Store a content under its hash; a content that turns out to differ from
        ``sha256`` (its source changed meanwhile) is removed and refused.

        Raises:
            ArtifactIntegrityError: what was written does not hash to ``sha256``.
        """
        key = blob_key(sha256)
        info = self.store.write(key, chunks)
        if info.sha256 != sha256:
            self.store.delete(key)
            raise ArtifactIntegrityError(
                f"content changed while it was copied (expected {sha256}, got {info.sha256})",
                details={"expected": sha256, "got": info.sha256},
            )

    def read(self, sha256: str) -> Iterator[bytes]:
        """A content's bytes, in chunks.

        Raises:
            NotFoundError: no such blob.
        """
        return self.store.iter_bytes(blob_key(sha256))

    def verify(self, sha256: str, size: int) -> str | None:
        """Why a blob is not the content its manifest names (missing, truncated, altered),
        or ``None`` when it is."""
        digest = hashlib.sha256()
        read = 0
        try:
            for chunk in self.read(sha256):
                digest.update(chunk)
                read += len(chunk)
        except NotFoundError:
            return "missing"
        if read != size:
            return f"{read} bytes where the manifest says {size}"
        if digest.hexdigest() != sha256:
            return f"content hashes to {digest.hexdigest()}, not {sha256}"
        return None

    def snapshot_ids(self) -> list[str]:
        """Every snapshot's id, oldest first."""
        ids = [
            info.key.rsplit("/", 1)[-1].removesuffix(".json")
            for info in self.store.list(SNAPSHOTS)
            if info.key.endswith(".json")
        ]
        return sorted(ids)

    def manifest(self, snapshot: str) -> Manifest:
        """A snapshot's manifest.

        Raises:
            NotFoundError: no such snapshot.
            ArtifactIntegrityError: the manifest is unreadable (corrupted or truncated).
        """
        key = manifest_key(snapshot)
        try:
            data = self.store.read_bytes(key)
        except NotFoundError:
            raise NotFoundError(
                f"no snapshot {snapshot!r} in {self.uri}: see `loopml backup --list`",
                details={"snapshot": snapshot},
            ) from None
        try:
            return Manifest.model_validate_json(data)
        except PydanticValidationError as exc:
            raise ArtifactIntegrityError(
                f"the manifest {key} in {self.uri} is corrupted or truncated: {exc.errors()[0]}",
                details={"file": key},
            ) from exc

    def manifests(self) -> list[Manifest]:
        """Every snapshot's manifest, oldest first."""
        return [self.manifest(s) for s in self.snapshot_ids()]

    def latest(self) -> Manifest | None:
        ids = self.snapshot_ids()
        return self.manifest(ids[-1]) if ids else None

    def save(self, manifest: Manifest) -> None:
        """Publish a snapshot: written last, once every blob it names is stored."""
        self.store.write_bytes(
            manifest_key(manifest.id), manifest.model_dump_json(indent=1).encode()
        )

    def prune(self, keep: int) -> Pruned:
        """Drop all but the ``keep`` newest snapshots, then every blob none of the kept
        ones references."""
        manifests = self.manifests()
        dropped = to_prune(manifests, keep)
        for manifest in dropped:
            self.store.delete(manifest_key(manifest.id))
        kept = referenced(m for m in manifests if m not in dropped)
        freed = 0
        count = 0
        for sha, size in self.blobs().items():
            if sha not in kept:
                self.store.delete(blob_key(sha))
                freed += size
                count += 1
        return Pruned([m.id for m in dropped], count, freed)
