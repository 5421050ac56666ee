"""``take_backup``: one consistent snapshot of a running platform into a vault.

The metadata database is copied first, in one transaction: that copy is the snapshot's
point in time. Everything after it is read to match it: each lake table's Delta log is cut
at the version that copy records (later commits, and tables created later, are left out),
and every artifact the copy can name already existed when it was taken, because the
platform writes an object before the row that names it. Objects are immutable once written
(atomic publication), so none is copied torn.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

from loopml._version import __version__
from loopml.auth.install import SECRET_FILE
from loopml.backup import secrets
from loopml.backup._copy import Copier, QuietReporter, Reporter
from loopml.backup.manifest import (
    CURRENT_PROJECT_PATH,
    DATABASE_PATH,
    ONLINE_PATH,
    SECRET_PATH,
    SETTINGS_PATH,
    Manifest,
    SecretsInfo,
    keeps_log_file,
    snapshot_id,
)
from loopml.backup.vault import BackupVault
from loopml.core import layout
from loopml.core.clock import utcnow
from loopml.core.errors import NotFoundError, ValidationError
from loopml.settings import Settings
from loopml.storage import ArtifactStore, ObjectInfo
from loopml.store.snapshot import lake_table_versions, snapshot_to_file, sqlite_file_backup
from loopml.wiring import open_artifact_store, open_metadata_store

_LAKE_KEY = re.compile(r"^(projects/[^/]+/lake/[^/]+)/(.+)$")
_LAST_CHECKPOINT = "_delta_log/_last_checkpoint"
_URL_PASSWORD = re.compile(r'(://[^:/@\s"]*:)[^@/\s"]*@')


def take_backup(
    settings: Settings,
    vault: BackupVault,
    *,
    passphrase: str | None = None,
    reporter: Reporter | None = None,
) -> tuple[Manifest, list[str]]:
    """Back up the platform ``settings`` names into ``vault``; with a ``passphrase``, its
    install secret too, encrypted.

    Returns:
        The new snapshot's manifest, and the artifact keys deleted while they were being
        copied (a concurrent deletion; empty on a quiet platform).
    """
    report = reporter or QuietReporter()
    started = time.monotonic()
    if passphrase is not None:
        secrets.check_passphrase(passphrase)
    artifacts = open_artifact_store(settings)
    _refuse_nested(vault, artifacts)
    copier = Copier.for_vault(vault, vault.latest())
    store = open_metadata_store(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="loopml-backup-") as tmp:
            report.begin("metadata database", 1)
            db_file = Path(tmp) / "loopml.db"
            revision = snapshot_to_file(store, db_file)
            taken = utcnow()
            copier.add_file(DATABASE_PATH, db_file)
            report.advance()
            pins = {
                layout.lake_table_prefix(project, table): version
                for project, table, version in lake_table_versions(db_file)
            }
            _copy_online_store(settings, copier, Path(tmp))
        _copy_artifacts(artifacts, pins, copier, report)
        copier.add_bytes(SETTINGS_PATH, settings_without_secrets(settings))
        _copy_current_project(settings, copier)
        sealed = _copy_secret(settings, copier, passphrase) if passphrase is not None else None
    finally:
        store.dispose()
    manifest = Manifest(
        id=snapshot_id(taken),
        created_at=taken,
        loopml_version=__version__,
        schema_revision=revision,
        source_database=store.dialect,
        lake={prefix: version for prefix, version in sorted(pins.items()) if version >= 0},
        secrets=sealed,
        files=copier.files,
        seconds=round(time.monotonic() - started, 3),
        new_bytes=copier.new_bytes,
        new_files=copier.new_files,
    )
    vault.save(manifest)
    return manifest, copier.vanished


def _refuse_nested(vault: BackupVault, artifacts: ArtifactStore) -> None:
    inside, outside = vault.uri.rstrip("/") + "/", artifacts.uri.rstrip("/") + "/"
    if inside.startswith(outside) or outside.startswith(inside):
        raise ValidationError(
            f"the backup destination {vault.uri} and the artifact store {artifacts.uri} hold "
            "one another: back up somewhere outside the artifact store",
            details={"backup": vault.uri, "artifacts": artifacts.uri},
        )


def settings_without_secrets(settings: Settings) -> bytes:
    """The settings in force as JSON, secret fields masked (pydantic's ``SecretStr``) and
    so are passwords inside URLs (``postgresql://user:***@host/db``)."""
    text = settings.model_dump_json(indent=1)
    return _URL_PASSWORD.sub(r"\1***@", text).encode()


def _copy_online_store(settings: Settings, copier: Copier, tmp: Path) -> None:
    source = settings.home / "online.db"
    if settings.features.online.type != "sqlite" or not source.is_file():
        return
    copy = tmp / "online.db"
    sqlite_file_backup(source, copy)
    copier.add_file(ONLINE_PATH, copy)


def _copy_artifacts(
    artifacts: ArtifactStore, pins: dict[str, int], copier: Copier, report: Reporter
) -> None:
    listed = list(artifacts.list(""))
    report.begin("artifacts and lake", len(listed))
    for info in listed:
        if _belongs(artifacts, info, pins, copier):
            copier.add_object(artifacts, info)
        report.advance()


def _belongs(
    artifacts: ArtifactStore, info: ObjectInfo, pins: dict[str, int], copier: Copier
) -> bool:
    """Whether an object is part of the snapshot: anything outside the lake, and a lake
    table's files as of the version the snapshot's metadata records; never the disk
    reserve (an artifact root that is the home itself lists it)."""
    if info.key.startswith(layout.DISK_RESERVE_FILE):
        return False
    match = _LAKE_KEY.match(info.key)
    if match is None:
        return True
    pinned = pins.get(match.group(1), -1)
    if pinned < 0:
        return False  # a table created after the snapshot, or with no commit recorded
    rest = match.group(2)
    if rest == _LAST_CHECKPOINT:
        _copy_last_checkpoint(artifacts, info, pinned, copier)
        return False
    if rest.startswith("_delta_log/"):
        return keeps_log_file(rest.removeprefix("_delta_log/"), pinned)
    return True


def _copy_last_checkpoint(
    artifacts: ArtifactStore, info: ObjectInfo, pinned: int, copier: Copier
) -> None:
    # Rewritten in place by every checkpoint: read once, kept only when it points at a
    # checkpoint of the pinned version or before (else readers list the log themselves).
    try:
        data = artifacts.read_bytes(info.key)
        version = int(json.loads(data)["version"])
    except (NotFoundError, ValueError, KeyError, TypeError):
        return  # deleted meanwhile, or unreadable: readers list the log instead
    if version <= pinned:
        copier.add_bytes("artifacts/" + info.key, data)


def _copy_current_project(settings: Settings, copier: Copier) -> None:
    try:
        chosen = (settings.home / layout.CURRENT_PROJECT_FILE).read_bytes()
    except FileNotFoundError:
        return  # `loopml use` never ran here
    copier.add_bytes(CURRENT_PROJECT_PATH, chosen)


def _copy_secret(settings: Settings, copier: Copier, passphrase: str) -> SecretsInfo:
    path = settings.home / SECRET_FILE
    if not path.is_file():
        raise ValidationError(
            f"--include-secrets: {path} does not exist (start the platform once to make it)",
            details={"file": str(path)},
        )
    sealed, info = secrets.encrypt(path.read_bytes(), passphrase)
    copier.add_bytes(SECRET_PATH, sealed)
    return info
