"""The online store at restore, on real stores: the embedded one comes back as the backup's
file; any other is refilled from the restored lake; a view that cannot be refilled leaves
the restore in place and a note with the command that finishes it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from loopml.backup import BackupVault, restore_backup, take_backup
from loopml.core.errors import ConflictError
from loopml.data import lake
from loopml.data.features import views
from loopml.data.features.materialize import materialize, read_online
from loopml.data.features.online import OnlineRow, namespace, open_online_store
from loopml.settings import Settings
from loopml.storage import LocalArtifactStore
from loopml.store import MetadataStore

VIEW = (
    "name: user_stats\nentities: [user_id]\nevent_time: ts\nttl: 700w\n"
    "source: stats\nfeatures: [spend]\n"
)
UNREACHABLE = json.dumps({"type": "redis", "url": "redis://127.0.0.1:1/0", "key_prefix": "x"})


def _materialized(home: Path) -> Settings:
    """A home with a table, a view over it, materialized into its embedded online store."""
    from datetime import UTC, datetime

    settings = Settings(home=home)
    store = MetadataStore(settings.database_url)
    artifacts = LocalArtifactStore(home / "artifacts")
    online = open_online_store(settings.features.online, home)
    try:
        store.upgrade()
        when = datetime(2026, 1, 1, tzinfo=UTC)
        rows = pa.table({"user_id": [1, 2], "ts": [when, when], "spend": [1.5, 2.5]})
        lake.ingest_arrow(store, artifacts, "default", "stats", rows, actor="tester")
        views.apply(store, artifacts, "default", VIEW, actor="tester")
        materialize(store, artifacts, online, "default", "user_stats", actor="tester")
    finally:
        online.close()
        store.dispose()
    return settings


def _online(settings: Settings) -> list[object]:
    store = MetadataStore(settings.database_url)
    online = open_online_store(settings.features.online, settings.home)
    try:
        entities = [{"user_id": 1}, {"user_id": 2}]
        found = read_online(store, online, "default", "user_stats", entities)
        return [f.values for f in found]
    finally:
        online.close()
        store.dispose()


def test_the_embedded_store_comes_back_as_its_file(tmp_path: Path) -> None:
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    take_backup(_materialized(tmp_path / "source"), vault)
    target = Settings(home=tmp_path / "target")
    restored = restore_backup(target, vault)
    assert restored.online is None
    assert _online(target) == [{"spend": 1.5}, {"spend": 2.5}]


def test_another_store_is_refilled_or_named_in_a_note(tmp_path: Path) -> None:
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    source = _materialized(tmp_path / "source")
    (source.home / "online.db").unlink()  # as a platform on Redis: no file in the backup
    take_backup(source, vault)
    target = Settings(home=tmp_path / "target")
    restored = restore_backup(target, vault)
    assert restored.online == {"default/user_stats": 2}
    assert _online(target) == [{"spend": 1.5}, {"spend": 2.5}]

    elsewhere = Settings.model_validate(
        {"home": tmp_path / "elsewhere", "features": {"online": json.loads(UNREACHABLE)}}
    )
    kept = restore_backup(elsewhere, vault)
    assert kept.online == {}
    assert len(kept.notes) == 1  # the install secret's
    (unfinished,) = kept.unfinished
    assert "feature view default/user_stats was not refilled" in unfinished
    assert "loopml features materialize user_stats --full -p default" in unfinished
    assert (tmp_path / "elsewhere" / "loopml.db").is_file()


@pytest.mark.redis
def test_a_redis_prefix_in_use_is_refused_before_anything_is_written(
    tmp_path: Path, redis_server: str
) -> None:
    """Refilled over another platform's keys, the online store would mix both: a key the
    backup lacks would keep answering. The restore refuses at the start, naming a key."""
    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    source = _materialized(tmp_path / "source")
    (source.home / "online.db").unlink()
    take_backup(source, vault)
    config = {"type": "redis", "url": redis_server, "key_prefix": f"t-{uuid.uuid4().hex}"}
    target = Settings.model_validate({"home": tmp_path / "target", "features": {"online": config}})
    online = open_online_store(target.features.online, target.home)
    try:
        online.write_batch("default/other", [OnlineRow("u=9", 1, b"{}")])
        with pytest.raises(ConflictError, match="is not empty") as refused:
            restore_backup(target, vault)
        assert refused.value.details["key"] == f"{config['key_prefix']}:default/other:u=9"
        assert not (tmp_path / "target").exists()

        online.delete_namespace("default/other")
        restored = restore_backup(target, vault)
        assert restored.online == {"default/user_stats": 2}
        assert _online(target) == [{"spend": 1.5}, {"spend": 2.5}]
    finally:
        online.delete_namespace("default/other")
        online.delete_namespace(namespace("default", "user_stats"))
        online.close()


def test_the_cli_says_what_is_left_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view the online store was not refilled with: the restore stays, and ``loopml
    restore`` prints the command that finishes it and exits 3, so a script notices."""
    from typer.testing import CliRunner

    from loopml.cli import main
    from loopml.cli.backup import UNFINISHED_EXIT

    vault = BackupVault(LocalArtifactStore(tmp_path / "dest"))
    source = _materialized(tmp_path / "source")
    (source.home / "online.db").unlink()
    take_backup(source, vault)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "target"))
    monkeypatch.setenv("LOOPML_FEATURES_ONLINE", UNREACHABLE)
    monkeypatch.setenv("COLUMNS", "300")
    done = CliRunner().invoke(main.app, ["restore", str(tmp_path / "dest")])
    assert done.exit_code == UNFINISHED_EXIT, done.output
    assert "restored snapshot" in done.output
    assert "not done" in done.output
    assert "loopml features materialize user_stats --full -p default" in done.output
    assert (tmp_path / "target" / "loopml.db").is_file()
