"""``loopml backup`` and ``loopml restore`` on a real home, in process: a summary on stdout,
nothing made where nothing should be."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli import main
from loopml.core import layout
from loopml.core.errors import NotFoundError
from loopml.monitor.disk import DiskReserve
from loopml.settings import Settings
from loopml.store import MetadataStore

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    store = MetadataStore(Settings(home=home).database_url)
    try:
        store.upgrade()
    finally:
        store.dispose()
    monkeypatch.setenv("LOOPML_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    return home


def test_backup_list_then_restore_into_an_empty_home(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "backups"
    for _ in range(2):
        done = runner.invoke(main.app, ["backup", str(dest)])
        assert done.exit_code == 0, done.output
        assert "snapshot " in done.output
    listed = runner.invoke(main.app, ["backup", "--list", str(dest)])
    assert listed.output.count(" sqlite ") == 2, listed.output

    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "restored"))
    done = runner.invoke(main.app, ["restore", str(dest)])
    assert done.exit_code == 0, done.output
    assert "restored snapshot" in done.output
    assert (tmp_path / "restored" / "loopml.db").is_file()
    assert (tmp_path / "restored" / "settings.from-backup.json").is_file()


def test_restore_from_nowhere_is_refused_and_makes_nothing(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-backup"
    done = runner.invoke(main.app, ["restore", str(missing)])
    assert isinstance(done.exception, NotFoundError)  # printed as one line by main()
    assert "no backup at" in str(done.exception)
    assert not missing.exists()
    listed = runner.invoke(main.app, ["backup", "--list", str(missing)])
    assert listed.exit_code != 0
    assert not missing.exists()


def test_the_disk_reserve_is_never_backed_up_nor_restored(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserve = DiskReserve(home / layout.DISK_RESERVE_FILE, 4 * 1024 * 1024)
    assert reserve.make()
    dest = tmp_path / "backups"
    done = runner.invoke(main.app, ["backup", str(dest)])
    assert done.exit_code == 0, done.output
    kept = [p for p in dest.rglob("*") if p.is_file()]
    assert not [p for p in kept if "reserve" in p.name]
    assert sum(p.stat().st_size for p in kept) < reserve.size  # not inside another file

    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "restored"))
    done = runner.invoke(main.app, ["restore", str(dest)])
    assert done.exit_code == 0, done.output
    assert not (tmp_path / "restored" / layout.DISK_RESERVE_FILE).exists()
