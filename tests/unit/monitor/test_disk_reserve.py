"""The home's disk reserve (``monitor.disk.DiskReserve``) on a real small disk: its blocks
really held, given back to an operation that frees space on a full disk, made again only
with room for twice its size, and shown on ``/metrics``."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from loopml.monitor.disk import DiskReserve, DiskSpace
from tests.conftest import fill_disk as _fill
from tests.conftest import small_disk

MiB = 1024 * 1024


def _free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def test_the_reserve_holds_its_blocks_and_is_released_only_on_a_full_disk(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "home", "8m") as home:
        reserve = DiskReserve(home / "disk.reserve", 2 * MiB)
        assert reserve.make()
        assert (home / "disk.reserve").stat().st_blocks * 512 >= 2 * MiB
        with reserve.freeing("a test"):
            assert reserve.held() == 2 * MiB  # room enough: kept
        filler = _fill(home)
        assert _free(home) == 0
        with reserve.freeing("a test"):
            assert reserve.held() == 0
            assert _free(home) >= 2 * MiB
            (home / "written").write_bytes(b"x" * MiB)  # what the operation writes
        assert reserve.held() == 0  # no room for twice its size yet
        filler.unlink()
        assert reserve.make()
        assert reserve.held() == 2 * MiB


def test_without_room_no_reserve_is_made_and_nothing_is_left(tmp_path: Path) -> None:
    with small_disk(tmp_path / "home", "8m") as home:
        reserve = DiskReserve(home / "disk.reserve", 5 * MiB)
        assert not reserve.make()  # 8 MB holds it, but not twice
        assert sorted(p.name for p in home.iterdir()) == []
        assert not DiskReserve(home / "disk.reserve", 0).make()


def test_a_reserve_of_another_size_is_replaced_and_one_of_size_0_removed(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "home", "8m") as home:
        assert DiskReserve(home / "disk.reserve", 3 * MiB).make()
        _fill(home)
        smaller = DiskReserve(home / "disk.reserve", MiB)
        assert smaller.make()  # 3 MiB given back, 1 MiB held again
        assert smaller.held() == MiB
        assert _free(home) >= 2 * MiB
        assert not DiskReserve(home / "disk.reserve", 0).make()
        assert not (home / "disk.reserve").exists()


def test_metrics_show_what_the_reserve_holds(tmp_path: Path) -> None:
    with small_disk(tmp_path / "home", "8m") as home:
        reserve = DiskReserve(home / "disk.reserve", MiB)
        registry = CollectorRegistry()
        registry.register(DiskSpace({"home": home}, reserve))
        assert 'loopml_disk_reserve_bytes{path="home"} 0.0' in generate_latest(registry).decode()
        reserve.make()
        text = generate_latest(registry).decode()
        assert 'loopml_disk_reserve_bytes{path="home"} 1.048576e+06' in text
