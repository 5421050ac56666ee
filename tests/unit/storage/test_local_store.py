"""Local-backend behaviour the contract cannot see: disk failures, folders, odd files."""

from __future__ import annotations

import os
import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core.errors import ConflictError, DiskFullError, ServiceUnavailableError
from loopml.storage import LocalArtifactStore
from tests.conftest import small_disk

MiB = 1024 * 1024


@pytest.fixture
def file_size_limit() -> Iterator[int]:
    """Make the kernel refuse writes past 1 MiB (EFBIG), as a full disk refuses (ENOSPC)."""
    limit = 1 * MiB
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_disk_failure_mid_write_removes_the_temp_file(tmp_path: Path, file_size_limit: int) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    store.write_bytes("model.bin", b"old")
    chunks = (b"x" * (256 * 1024) for _ in range(4 * file_size_limit // (256 * 1024)))

    with pytest.raises(ServiceUnavailableError, match="nothing was stored") as caught:
        store.write("model.bin", chunks)

    assert caught.value.status == 503
    assert caught.value.details["errno"] == "EFBIG"
    assert list((tmp_path / "root" / ".loopml-tmp").iterdir()) == []
    assert store.read_bytes("model.bin") == b"old"


def test_a_full_disk_refuses_the_write_naming_the_root_and_keeps_the_old_object(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "root", "2m") as root:
        store = LocalArtifactStore(root)
        store.write_bytes("model.bin", b"old")
        chunks = (b"x" * (256 * 1024) for _ in range(12))

        with pytest.raises(DiskFullError) as caught:
            store.write("model.bin", chunks)

        assert caught.value.status == 507
        assert caught.value.message.startswith(
            f"the disk holding {root} is full: artifact 'model.bin' was not written"
        )
        assert list((root / ".loopml-tmp").iterdir()) == []
        assert store.read_bytes("model.bin") == b"old"
        store.write_bytes("model.bin", b"new")  # the space is back: no restart, no cleanup
        assert store.read_bytes("model.bin") == b"new"


def test_delete_prunes_empty_folders(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    store.write_bytes("a/b/c/d.txt", b"1")
    store.write_bytes("a/keep.txt", b"2")

    store.delete("a/b/c/d.txt")

    assert not (tmp_path / "root" / "a" / "b").exists()
    assert (tmp_path / "root" / "a" / "keep.txt").exists()
    store.delete("a/keep.txt")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == [".loopml-tmp"]


def test_write_over_a_folder_or_under_a_file_conflicts(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    store.write_bytes("a/b.txt", b"1")

    with pytest.raises(ConflictError, match="folder of that name"):
        store.write_bytes("a", b"2")
    with pytest.raises(ConflictError, match="not a folder"):
        store.write_bytes("a/b.txt/c", b"3")
    assert list((tmp_path / "root" / ".loopml-tmp").iterdir()) == []


def test_list_skips_files_no_key_can_name(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    store.write_bytes("ok.txt", b"1")
    (tmp_path / "root" / "bad;name").write_bytes(b"2")
    (tmp_path / "root" / ".loopml-other").mkdir()
    (tmp_path / "root" / ".loopml-other" / "x").write_bytes(b"3")

    assert [i.key for i in store.list()] == ["ok.txt"]


def test_root_is_created_and_uri_is_a_file_uri(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "new" / "root")

    assert (tmp_path / "new" / "root" / ".loopml-tmp").is_dir()
    assert store.uri == (tmp_path / "new" / "root").resolve().as_uri()


def test_cleanup_removes_only_old_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    tmp = tmp_path / "root" / ".loopml-tmp"
    (tmp / "w-old").write_bytes(b"orphan")
    (tmp / "w-new").write_bytes(b"in flight")
    two_hours_ago = time.time() - 7200
    os.utime(tmp / "w-old", (two_hours_ago, two_hours_ago))

    assert store.cleanup() == 1

    assert sorted(p.name for p in tmp.iterdir()) == ["w-new"]
