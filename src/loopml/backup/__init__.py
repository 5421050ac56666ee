"""Backup and restore of a whole platform: the metadata database, the artifact store and
its lake tables, the online store, the settings and (encrypted, on request) the install
secret, as content-addressed snapshots in a folder or an S3 prefix (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path

from loopml.backup._copy import QuietReporter as QuietReporter
from loopml.backup._copy import Reporter as Reporter
from loopml.backup.manifest import Manifest as Manifest
from loopml.backup.manifest import VaultFile as VaultFile
from loopml.backup.restore import Restored as Restored
from loopml.backup.restore import restore_backup as restore_backup
from loopml.backup.restore import verify as verify
from loopml.backup.take import take_backup as take_backup
from loopml.backup.vault import BackupVault as BackupVault
from loopml.backup.vault import Pruned as Pruned
from loopml.core.errors import NotFoundError
from loopml.settings import Settings
from loopml.storage import open_artifact_store


def open_vault(dest: str, settings: Settings, *, create: bool = True) -> BackupVault:
    """The backup destination ``dest``: a folder (made if missing, when ``create``) or
    ``s3://bucket/prefix``, reached with the S3 endpoint and credentials of the
    ``artifacts`` settings.

    Raises:
        NotFoundError: ``create`` is off and the folder does not exist.
    """
    if not create and "://" not in dest and not Path(dest).expanduser().is_dir():
        raise NotFoundError(f"no backup at {dest}: not a folder", details={"backup": dest})
    cfg = settings.artifacts
    secret = cfg.s3_secret_access_key
    return BackupVault(
        open_artifact_store(
            dest,
            s3_endpoint_url=cfg.s3_endpoint_url,
            s3_region=cfg.s3_region,
            s3_access_key_id=cfg.s3_access_key_id,
            s3_secret_access_key=secret.get_secret_value() if secret else None,
            s3_part_size=cfg.s3_part_size_bytes,
        )
    )
