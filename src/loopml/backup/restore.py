"""``restore_backup``: a snapshot back into an empty home, or into the database and
artifact store the settings name (so a backup of an embedded home moves it to PostgreSQL
and S3).

Every blob is checked against the manifest before anything is written. The home is built
in a staging folder beside it and renamed into place last; a configured artifact store gets
its objects before the database, and a PostgreSQL database is loaded in one transaction,
last: a failure at any step removes what was written, so no half-restored platform stays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from loopml.auth.install import SECRET_FILE
from loopml.backup import secrets
from loopml.backup._copy import QuietReporter, Reporter
from loopml.backup._online import refill_online, restored_as_file
from loopml.backup.manifest import (
    ARTIFACTS,
    CURRENT_PROJECT_PATH,
    DATABASE_PATH,
    ONLINE_PATH,
    SECRET_PATH,
    SETTINGS_PATH,
    Manifest,
    VaultFile,
    blob_key,
)
from loopml.backup.vault import BackupVault
from loopml.core import layout
from loopml.core.errors import ArtifactIntegrityError, ConflictError, NotFoundError
from loopml.data.features.online import open_online_store
from loopml.settings import Settings
from loopml.storage import ArtifactStore, open_artifact_store
from loopml.store import MetadataStore
from loopml.store.snapshot import database_tables, load_file
from loopml.wiring import open_artifact_store as open_configured_store
from loopml.wiring import open_metadata_store

log = logging.getLogger(__name__)

SETTINGS_COPY = "settings.from-backup.json"
"""Where the backed-up settings land in the restored home: for reading, never applied."""


@dataclass
class Restored:
    """What a restore did."""

    manifest: Manifest
    files: int = 0
    bytes: int = 0
    rows: int | None = None
    online: dict[str, int] | None = None
    """Entities written per ``project/view`` when the online store was refilled from the
    lake (``None``: restored as the backup's file)."""
    notes: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    """What the restore left to do by hand (a view the online store was not refilled
    with), each with its command; the CLI exits non-zero when there is any."""


def pick(vault: BackupVault, snapshot: str | None) -> Manifest:
    """The snapshot to restore: the one named, else the newest.

    Raises:
        NotFoundError: no such snapshot, or none at all.
    """
    if snapshot is not None:
        return vault.manifest(snapshot)
    latest = vault.latest()
    if latest is None:
        raise NotFoundError(f"{vault.uri} holds no snapshot", details={"backup": vault.uri})
    return latest


def verify(vault: BackupVault, manifest: Manifest, reporter: Reporter | None = None) -> None:
    """Check every file of the snapshot against its hash and size.

    Raises:
        ArtifactIntegrityError: a file is missing, truncated or altered (named).
    """
    report = reporter or QuietReporter()
    report.begin("verifying", len(manifest.files))
    seen: set[str] = set()
    for entry in manifest.files:
        if entry.sha256 not in seen:
            problem = vault.verify(entry.sha256, entry.size)
            if problem is not None:
                raise ArtifactIntegrityError(
                    f"the backup is damaged: {entry.path} (blob {blob_key(entry.sha256)} in "
                    f"{vault.uri}): {problem}; nothing was restored",
                    details={"file": entry.path, "blob": blob_key(entry.sha256)},
                )
            seen.add(entry.sha256)
        report.advance()


def restore_backup(
    settings: Settings,
    vault: BackupVault,
    snapshot: str | None = None,
    *,
    passphrase: str | None = None,
    reporter: Reporter | None = None,
) -> Restored:
    """Restore a snapshot (the newest when ``snapshot`` is ``None``) into the empty home,
    database and artifact store ``settings`` names.

    Raises:
        NotFoundError: no such snapshot.
        ArtifactIntegrityError: the backup is damaged (the file is named); nothing written.
        ConflictError: the target is not empty (what is there is named).
        ValidationError: the passphrase does not open the backup's secrets.
    """
    report = reporter or QuietReporter()
    manifest = pick(vault, snapshot)
    verify(vault, manifest, report)
    _refuse_non_empty(settings)
    secret = _open_secret(vault, manifest, passphrase)
    result = Restored(manifest)
    if manifest.secrets is not None and secret is None:
        result.notes.append("the backup's install secret was not restored (no passphrase)")
    if manifest.secrets is None:
        result.notes.append(
            "the backup holds no install secret: API tokens made before it stop working "
            "(take backups with --include-secrets to keep them); passwords still work"
        )
    _Restore(settings, vault, manifest, result, report).run(secret)
    if not restored_as_file(settings, manifest):
        result.online, result.unfinished = refill_online(settings)
    return result


def _open_secret(vault: BackupVault, manifest: Manifest, passphrase: str | None) -> bytes | None:
    if manifest.secrets is None or passphrase is None:
        return None
    entry = next(f for f in manifest.files if f.path == SECRET_PATH)
    return secrets.decrypt(b"".join(vault.read(entry.sha256)), passphrase, manifest.secrets)


def _refuse_non_empty(settings: Settings) -> None:
    home = settings.home
    if home.exists():
        entries = sorted(p.name for p in home.iterdir())
        if entries:
            raise ConflictError(
                f"the home {home} is not empty ({', '.join(entries[:8])}): restore into an "
                "empty or missing folder (set LOOPML_HOME)",
                details={"home": str(home), "entries": entries},
            )
    if settings.database.url is not None:
        store = open_metadata_store(settings)
        try:
            tables = database_tables(store) if store.dialect != "sqlite" else []
        finally:
            store.dispose()
        if tables:
            raise ConflictError(
                f"the database {store.safe_url} is not empty (tables: {', '.join(tables[:5])}"
                "): restore into an empty database",
                details={"tables": tables},
            )
        if store.dialect == "sqlite" and Path(_sqlite_path(store)).exists():
            raise ConflictError(
                f"the database file {_sqlite_path(store)} exists: restore into a new file",
                details={"database": _sqlite_path(store)},
            )
    if settings.features.online.type != "sqlite":  # the SQLite file lives in the home
        _refuse_online_in_use(settings)
    if settings.artifacts.root is not None:
        artifacts = open_configured_store(settings)
        first = next(iter(artifacts.list("")), None)
        if first is not None:
            raise ConflictError(
                f"the artifact store {artifacts.uri} is not empty (it holds {first.key}): "
                "restore into an empty one",
                details={"artifacts": artifacts.uri, "key": first.key},
            )


def _refuse_online_in_use(settings: Settings) -> None:
    """The refill writes every materialized view's entities into the online store: over
    another platform's keys it would mix the two (a key the backup lacks would survive)."""
    config = settings.features.online
    try:
        online = open_online_store(config, settings.home)
        try:
            key = online.first_key()
        finally:
            online.close()
    except Exception:  # unreachable now: the refill at the end names it, with its command
        log.warning("could not check the online store is empty before the restore", exc_info=True)
        return
    if key is not None:
        prefix = getattr(config, "key_prefix", "")
        raise ConflictError(
            f"the online store ({config.type}, key prefix {prefix!r}) is not empty (it holds "
            f"{key}): restore into an unused one (features.online.key_prefix) or delete its "
            "keys first",
            details={"online": config.type, "key_prefix": prefix, "key": key},
        )


def _sqlite_path(store: MetadataStore) -> str:
    return str(store._parsed.database)


@dataclass
class _Restore:
    settings: Settings
    vault: BackupVault
    manifest: Manifest
    result: Restored
    report: Reporter
    written: list[str] = field(default_factory=list)

    def run(self, secret: bytes | None) -> None:
        home = self.settings.home
        staging = home.parent / f".{home.name}.restoring-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True, mode=0o700)
        configured = self.settings.artifacts.root is not None
        artifacts = (
            open_configured_store(self.settings)
            if configured
            else open_artifact_store(str(staging / "artifacts"))
        )
        try:
            self._artifacts(artifacts)
            self._home_files(staging, secret)
            self._database(staging)
            if home.exists():
                home.rmdir()  # checked empty above
            staging.rename(home)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if configured:
                self._unwrite(artifacts)
            raise

    def _copy_to(self, entry: VaultFile, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            for chunk in self.vault.read(entry.sha256):
                handle.write(chunk)
        self._count(entry)

    def _count(self, entry: VaultFile) -> None:
        self.result.files += 1
        self.result.bytes += entry.size
        self.report.advance()

    def _artifacts(self, artifacts: ArtifactStore) -> None:
        entries = [f for f in self.manifest.files if f.path.startswith(ARTIFACTS)]
        self.report.begin("artifacts and lake", len(entries))
        for entry in entries:
            key = entry.path.removeprefix(ARTIFACTS)
            info = artifacts.write(key, self.vault.read(entry.sha256))
            self.written.append(key)
            if info.sha256 != entry.sha256:
                raise ArtifactIntegrityError(
                    f"{entry.path} changed in the backup while it was restored",
                    details={"file": entry.path},
                )
            self._count(entry)

    def _home_files(self, staging: Path, secret: bytes | None) -> None:
        for entry in self.manifest.files:
            if entry.path == ONLINE_PATH:
                self._copy_to(entry, staging / "online.db")
            elif entry.path == SETTINGS_PATH:
                self._copy_to(entry, staging / SETTINGS_COPY)
            elif entry.path == CURRENT_PROJECT_PATH:
                self._copy_to(entry, staging / layout.CURRENT_PROJECT_FILE)
        if secret is not None:
            path = staging / SECRET_FILE
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secret)

    def _database(self, staging: Path) -> None:
        entry = next(f for f in self.manifest.files if f.path == DATABASE_PATH)
        self.report.begin("metadata database", 1)
        if self.settings.database.url is None:
            self._copy_to(entry, staging / "loopml.db")
            return
        store = open_metadata_store(self.settings)
        try:
            if store.dialect == "sqlite":
                target = Path(_sqlite_path(store))
                part = target.with_name(f".{target.name}.restoring-{uuid.uuid4().hex[:8]}")
                self._copy_to(entry, part)
                part.rename(target)
                return
            loaded = staging / "loopml.db"
            self._copy_to(entry, loaded)
            self.result.rows = load_file(loaded, store)
            loaded.unlink()
        finally:
            store.dispose()

    def _unwrite(self, artifacts: ArtifactStore) -> None:
        for key in self.written:
            with contextlib.suppress(NotFoundError):
                artifacts.delete(key)
