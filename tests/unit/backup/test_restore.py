"""Restore on real stores: a failure after objects were written leaves nothing behind, and
a wrong passphrase or a non-empty target is refused before anything is written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from loopml.backup import BackupVault, restore_backup, take_backup
from loopml.core.errors import ConflictError, ValidationError
from loopml.settings import Settings
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore
from loopml.store.snapshot import database_tables

PASSPHRASE = "a long enough passphrase"


def _platform(home: Path, revision: str | None = None) -> Settings:
    settings = Settings(home=home)
    store = MetadataStore(settings.database_url)
    try:
        store.upgrade()
    finally:
        store.dispose()
    artifacts = LocalArtifactStore(home / "artifacts")
    artifacts.write_bytes("projects/p1/artifacts/model.onnx", b"weights" * 100)
    (home / "secrets").mkdir(mode=0o700)
    (home / "secrets" / "install.key").write_text("ab" * 32 + "\n")
    (home / "secrets" / "install.key").chmod(0o600)
    if revision is not None:
        with sqlite3.connect(home / "loopml.db") as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    return settings


def test_a_failed_load_removes_the_objects_already_written(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = _platform(tmp_path / "source", revision="0000older000")
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    take_backup(settings, vault)
    target = Settings(
        home=tmp_path / "target",
        database={"url": postgres_url},
        artifacts={"root": str(tmp_path / "objects")},
    )
    with pytest.raises(ConflictError, match="schema revision 0000older000"):
        restore_backup(target, vault)
    assert not (tmp_path / "target").exists()
    assert list(LocalArtifactStore(tmp_path / "objects").list("")) == []
    store = MetadataStore(postgres_url)
    try:
        assert database_tables(store) == []
    finally:
        store.dispose()
    assert [p.name for p in tmp_path.iterdir() if "restoring" in p.name] == []


def test_secrets_come_back_only_with_their_passphrase(tmp_path: Path) -> None:
    settings = _platform(tmp_path / "source")
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    manifest, vanished = take_backup(settings, vault, passphrase=PASSPHRASE)
    assert vanished == []
    assert manifest.secrets is not None
    assert b"ab" * 32 not in b"".join(
        b"".join(vault.read(f.sha256)) for f in manifest.files if f.path.startswith("secrets/")
    )
    target = Settings(home=tmp_path / "target")
    with pytest.raises(ValidationError, match="passphrase does not open"):
        restore_backup(target, vault, passphrase="not the passphrase at all")
    assert not (tmp_path / "target").exists()
    restored = restore_backup(target, vault, passphrase=PASSPHRASE)
    assert restored.notes == []
    key = tmp_path / "target" / "secrets" / "install.key"
    assert key.read_text() == "ab" * 32 + "\n"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "target" / "artifacts/projects/p1/artifacts/model.onnx").is_file()
    with pytest.raises(ConflictError, match="is not empty"):
        restore_backup(target, vault, passphrase=PASSPHRASE)


def test_a_short_passphrase_is_refused_before_anything_is_copied(tmp_path: Path) -> None:
    settings = _platform(tmp_path / "source")
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    with pytest.raises(ValidationError, match="12 characters"):
        take_backup(settings, vault, passphrase="short")
    assert vault.snapshot_ids() == []
    assert vault.blobs() == {}


def test_a_destination_inside_the_artifact_store_is_refused(tmp_path: Path) -> None:
    settings = _platform(tmp_path / "source")
    vault = BackupVault(LocalArtifactStore(tmp_path / "source" / "artifacts" / "backups"))
    with pytest.raises(ValidationError, match="hold one another"):
        take_backup(settings, vault)


def test_the_project_loopml_use_chose_comes_back(tmp_path: Path) -> None:
    """Issue 51, item 7: a restored home was back on the default project."""
    from loopml.cli._context import project_file

    settings = _platform(tmp_path / "source")
    project_file(settings.home).write_text("churn\n", encoding="utf-8")
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    take_backup(settings, vault)
    target = Settings(home=tmp_path / "target")
    restore_backup(target, vault)
    assert project_file(target.home).read_text(encoding="utf-8") == "churn\n"


def test_a_home_where_loopml_use_never_ran_restores_without_a_choice(tmp_path: Path) -> None:
    from loopml.cli._context import project_file

    settings = _platform(tmp_path / "source")
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    take_backup(settings, vault)
    target = Settings(home=tmp_path / "target")
    restore_backup(target, vault)
    assert not project_file(target.home).exists()


def test_the_operations_doc_says_only_an_upgrade_brings_a_restored_older_database_forward() -> None:
    """Issue 51, item 7: it said a plain `loopml up` does, which refuses an older revision
    (``loopml.cli.server._prepare_database``; tests/unit/cli/test_db.py)."""
    text = (Path(__file__).parents[3] / "docs" / "operations.md").read_text(encoding="utf-8")
    said = " ".join(text[text.index("Loading into PostgreSQL needs") :].split()[:60])
    assert "(or `loopml up`)" not in said
    assert "`loopml up --upgrade`" in said
    assert "a plain `loopml up` refuses a database at an older revision" in said
