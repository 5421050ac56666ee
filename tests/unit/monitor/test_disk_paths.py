"""Which disks ``/metrics`` reports (``monitor.disk.watched``): the home always, and the
artifact root and a SQLite database only when each is on a filesystem of its own."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from loopml.monitor.disk import DiskSpace, watched
from tests.conftest import small_disk


def test_stores_on_the_home_s_disk_are_not_reported_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    paths = watched(home, (home / "artifacts").as_uri(), f"sqlite:///{home / 'loopml.db'}")
    assert paths == {"home": home}
    remote = watched(home, "s3://bucket/prefix", "postgresql://127.0.0.1/loopml")
    assert remote == {"home": home}


def test_an_artifact_root_and_a_database_on_disks_of_their_own_get_gauges(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with (
        small_disk(tmp_path / "artifacts", "8m") as artifacts,
        small_disk(tmp_path / "db", "4m") as db,
    ):
        paths = watched(home, artifacts.as_uri(), f"sqlite:///{db / 'loopml.db'}?timeout=5")
        assert paths == {"home": home, "artifacts": artifacts, "database": db}
        registry = CollectorRegistry()
        registry.register(DiskSpace(paths))
        text = generate_latest(registry).decode()
        assert 'loopml_disk_size_bytes{path="artifacts"} 8.388608e+06' in text
        assert 'loopml_disk_size_bytes{path="database"} 4.194304e+06' in text
        assert 'loopml_disk_free_bytes{path="home"}' in text
