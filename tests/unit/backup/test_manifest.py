"""The pure rules of snapshots: blob keys, ids, retention, and which Delta log files a
pinned version keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loopml.backup.manifest import (
    Manifest,
    VaultFile,
    blob_key,
    is_snapshot_id,
    keeps_log_file,
    log_version,
    referenced,
    snapshot_id,
    to_prune,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


def _manifest(at: datetime, *shas: str) -> Manifest:
    return Manifest(
        id=snapshot_id(at),
        created_at=at,
        loopml_version="0.1.0",
        schema_revision="abc",
        source_database="sqlite",
        files=[VaultFile(path=f"artifacts/{i}", sha256=s, size=1) for i, s in enumerate(shas)],
    )


def test_blobs_are_named_by_their_hash_and_nothing_else() -> None:
    assert blob_key(SHA_A) == f"blobs/aa/{SHA_A}"
    for bad in ("../etc/passwd", "A" * 64, "a" * 63, ""):
        with pytest.raises(ValueError, match="SHA-256"):
            blob_key(bad)


def test_snapshot_ids_sort_by_time_and_are_recognised() -> None:
    first = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    ids = [snapshot_id(first + timedelta(microseconds=n)) for n in (0, 1, 1_000_000)]
    assert ids == sorted(ids)
    assert ids[0] == "20260102T030405000006Z"
    assert all(map(is_snapshot_id, ids))
    assert not is_snapshot_id("../x")


def test_retention_keeps_the_newest_and_the_blobs_they_reference() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    snaps = [
        _manifest(now + timedelta(hours=h), sha) for h, sha in enumerate((SHA_A, SHA_B, SHA_B))
    ]
    dropped = to_prune(list(reversed(snaps)), keep=2)
    assert dropped == [snaps[0]]
    assert referenced(s for s in snaps if s not in dropped) == {SHA_B}
    assert to_prune(snaps, keep=5) == []
    with pytest.raises(ValueError, match="at least one"):
        to_prune(snaps, keep=0)


def test_a_pinned_table_keeps_its_log_up_to_that_version_only() -> None:
    assert log_version("00000000000000000007.json") == 7
    assert log_version("00000000000000000010.checkpoint.parquet") == 10
    assert log_version("00000000000000000010.checkpoint.0000000001.0000000002.parquet") == 10
    assert log_version("_commit_3f2a.json.tmp") is None
    assert keeps_log_file("00000000000000000003.json", 3)
    assert not keeps_log_file("00000000000000000004.json", 3)
    assert not keeps_log_file("00000000000000000004.checkpoint.parquet", 3)
    assert not keeps_log_file("_last_checkpoint", 3)  # decided by its content
    assert not keeps_log_file(".tmp/00000000000000000001.json", 3)


def test_a_manifest_survives_its_json_and_counts_its_size() -> None:
    manifest = _manifest(datetime(2026, 1, 1, tzinfo=UTC), SHA_A, SHA_A)
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert manifest.size == 2


def test_the_settings_kept_in_a_backup_hold_no_secret() -> None:
    from loopml.backup.take import settings_without_secrets
    from loopml.settings import Settings

    settings = Settings(
        database={"url": "postgresql://loopml:hunter22@db.internal:5432/loopml"},
        artifacts={"s3_secret_access_key": "s3-secret-value"},
        token="lm_secret_token",
    )
    kept = settings_without_secrets(settings).decode()
    assert "postgresql://loopml:***@db.internal:5432/loopml" in kept
    for secret in ("hunter22", "s3-secret-value", "lm_secret_token"):
        assert secret not in kept
