"""``BackupVault`` on a real folder: content stored once, damage found and named, retention
freeing only what no kept snapshot references."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml.backup import BackupVault
from loopml.backup._copy import Copier
from loopml.backup.manifest import Manifest, blob_key, snapshot_id
from loopml.core.errors import ArtifactIntegrityError, NotFoundError
from loopml.storage import LocalArtifactStore


@pytest.fixture
def vault(tmp_path: Path) -> BackupVault:
    return BackupVault(LocalArtifactStore(tmp_path / "dest"))


def _snapshot(vault: BackupVault, at: datetime, contents: dict[str, bytes]) -> Manifest:
    copier = Copier.for_vault(vault, vault.latest())
    for path, data in contents.items():
        copier.add_bytes(path, data)
    manifest = Manifest(
        id=snapshot_id(at),
        created_at=at,
        loopml_version="0.1.0",
        schema_revision="abc",
        source_database="sqlite",
        files=copier.files,
        new_bytes=copier.new_bytes,
        new_files=copier.new_files,
    )
    vault.save(manifest)
    return manifest


def test_a_second_snapshot_stores_only_new_content(vault: BackupVault) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    one = _snapshot(vault, now, {"a": b"x" * 100, "b": b"y" * 50})
    two = _snapshot(vault, now + timedelta(hours=1), {"a": b"x" * 100, "c": b"y" * 50, "d": b"z"})
    assert (one.new_files, one.new_bytes) == (2, 150)
    assert (two.new_files, two.new_bytes) == (1, 1)
    assert len(vault.blobs()) == 3
    assert [m.id for m in vault.manifests()] == [one.id, two.id]
    assert vault.latest() == two


def test_damage_is_found_and_described(vault: BackupVault, tmp_path: Path) -> None:
    data = b"content " * 1000
    sha = hashlib.sha256(data).hexdigest()
    _snapshot(vault, datetime(2026, 1, 1, tzinfo=UTC), {"f": data})
    blob = tmp_path / "dest" / blob_key(sha)
    assert vault.verify(sha, len(data)) is None
    blob.write_bytes(data[:-1] + b"!")
    assert "hashes to" in str(vault.verify(sha, len(data)))
    blob.write_bytes(data[:10])
    assert vault.verify(sha, len(data)) == "10 bytes where the manifest says 8000"
    blob.unlink()
    assert vault.verify(sha, len(data)) == "missing"


def test_a_blob_whose_source_changed_meanwhile_is_refused(vault: BackupVault) -> None:
    with pytest.raises(ArtifactIntegrityError, match="changed while it was copied"):
        vault.put("0" * 64, [b"not that"])
    assert vault.blobs() == {}


def test_a_truncated_manifest_is_named(vault: BackupVault, tmp_path: Path) -> None:
    manifest = _snapshot(vault, datetime(2026, 1, 1, tzinfo=UTC), {"f": b"1"})
    path = tmp_path / "dest" / "snapshots" / f"{manifest.id}.json"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ArtifactIntegrityError, match=f"snapshots/{manifest.id}.json"):
        vault.manifest(manifest.id)
    with pytest.raises(NotFoundError, match="backup --list"):
        vault.manifest("20990101T000000000000Z")


def test_retention_drops_old_snapshots_and_their_unshared_blobs(vault: BackupVault) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    _snapshot(vault, now, {"a": b"old only", "b": b"shared"})
    _snapshot(vault, now + timedelta(hours=1), {"b": b"shared", "c": b"mid"})
    newest = _snapshot(vault, now + timedelta(hours=2), {"b": b"shared", "c": b"mid"})
    pruned = vault.prune(keep=1)
    assert len(pruned.snapshots) == 2
    assert (pruned.blobs, pruned.bytes) == (1, len(b"old only"))
    assert vault.snapshot_ids() == [newest.id]
    for entry in newest.files:
        assert vault.verify(entry.sha256, entry.size) is None
