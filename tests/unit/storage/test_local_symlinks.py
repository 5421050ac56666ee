"""RELIABILITY item 2: symlinks inside a local artifact root never lead outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopml.core.errors import InvalidPathError, NotFoundError
from loopml.storage import LocalArtifactStore


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "secret.txt").write_bytes(b"secret")
    (folder / "sub" / "inner.txt").write_bytes(b"inner")
    return folder


@pytest.fixture
def store(tmp_path: Path, outside: Path) -> LocalArtifactStore:
    root = tmp_path / "root"
    store = LocalArtifactStore(root)
    store.write_bytes("real/ok.txt", b"ok")
    (root / "file-link").symlink_to(outside / "secret.txt")
    (root / "dir-link").symlink_to(outside)
    (root / "real" / "nested-link").symlink_to(outside / "secret.txt")
    (root / "real" / "inner-link").symlink_to(root / "real" / "ok.txt")  # inside, still refused
    return store


LINKED_KEYS = [
    "file-link",
    "real/nested-link",
    "real/inner-link",
    "dir-link/secret.txt",
    "dir-link/sub/inner.txt",
]


@pytest.mark.parametrize("key", LINKED_KEYS)
def test_reads_refuse_symlinks(store: LocalArtifactStore, key: str) -> None:
    for read in (store.open, store.read_bytes, store.stat, store.exists):
        with pytest.raises(InvalidPathError, match=r"^Invalid path.*symbolic link"):
            read(key)


@pytest.mark.parametrize("key", [*LINKED_KEYS, "dir-link/new.txt", "dir-link/sub/new/deep.txt"])
def test_writes_do_not_go_through_symlinks(
    store: LocalArtifactStore, outside: Path, tmp_path: Path, key: str
) -> None:
    before = snapshot(outside)

    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        store.write_bytes(key, b"pwned")

    assert snapshot(outside) == before
    assert not (outside / "new.txt").exists()
    assert list((tmp_path / "root" / ".loopml-tmp").iterdir()) == []
    assert (tmp_path / "root" / "file-link").is_symlink()  # not replaced either


@pytest.mark.parametrize("key", LINKED_KEYS)
def test_deletes_refuse_symlinks(
    store: LocalArtifactStore, outside: Path, tmp_path: Path, key: str
) -> None:
    before = snapshot(outside)

    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        store.delete(key)

    assert snapshot(outside) == before
    assert (tmp_path / "root" / "file-link").is_symlink()


def test_list_skips_symlinks_and_never_descends(store: LocalArtifactStore) -> None:
    assert [i.key for i in store.list()] == ["real/ok.txt"]
    assert [i.key for i in store.list("real")] == ["real/ok.txt"]


def test_listing_or_deleting_under_a_symlinked_folder_is_refused(
    store: LocalArtifactStore, outside: Path
) -> None:
    before = snapshot(outside)

    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        list(store.list("dir-link"))
    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        store.delete_prefix("dir-link/sub")

    assert snapshot(outside) == before


def test_a_symlinked_root_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "real-root").mkdir()
    (tmp_path / "root-link").symlink_to(tmp_path / "real-root")
    store = LocalArtifactStore(tmp_path / "root-link")

    store.write_bytes("a.txt", b"a")

    assert (tmp_path / "real-root" / "a.txt").read_bytes() == b"a"
    assert store.read_bytes("a.txt") == b"a"


def test_a_fifo_is_not_an_object_and_does_not_hang(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    os.mkfifo(tmp_path / "root" / "pipe")

    with pytest.raises(NotFoundError):
        store.open("pipe")
    with pytest.raises(NotFoundError):
        store.stat("pipe")
    assert list(store.list()) == []
