"""Artifacts in a local folder (POSIX: it relies on ``dir_fd`` and ``O_NOFOLLOW``).

Writes go to a temporary file under ``<root>/.loopml-tmp/`` (same filesystem, a name the key
validator reserves), are hashed while written, fsynced, then renamed into place with
``os.replace``: a reader sees the old object or the new one, never a partial one.

Symlinks are never followed below the root (RELIABILITY item 2): paths are walked folder by
folder relative to descriptors (see ``_local_fs``), a symlink anywhere on a key's path is
refused with ``InvalidPathError``, and ``list`` skips symlinks and never descends into them.

Disk errors while writing (``EIO``, ...) surface as ``ServiceUnavailableError`` (HTTP 503,
retryable) after the temporary file is removed, a full disk as ``DiskFullError`` (507) naming
the root; an exception raised by the caller's ``chunks`` iterator propagates unchanged.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict

from loopml.core.disk import disk_full
from loopml.core.errors import DiskFullError, NotFoundError
from loopml.core.keys import MAX_DEPTH, RESERVED_PREFIX, validate_key
from loopml.storage.backends._local_fs import (
    DIR_FLAGS,
    FILE_FLAGS,
    check_target,
    explain,
    info,
    lstat_file,
    not_found,
    open_folders,
    storage_failed,
    stream_to,
    symlink_refused,
)
from loopml.storage.base import ArtifactStore, ObjectInfo, folder_prefix, is_listable_key
from loopml.storage.native import NativeLocation, local_location

TMP_DIR = f"{RESERVED_PREFIX}-tmp"
_COMMIT_ATTEMPTS = 3


class LocalStoreConfig(BaseModel):
    """Configuration of a ``LocalArtifactStore``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local"]
    root: str

    def build(self) -> LocalArtifactStore:
        """Open the store this configuration describes."""
        return LocalArtifactStore(self.root)


class LocalArtifactStore(ArtifactStore):
    """An ``ArtifactStore`` over a local folder.

    Args:
        root: the folder; created if missing. The root itself may be a symlink (it is
            resolved once, here); nothing below it is followed.
    """

    def __init__(self, root: str | Path) -> None:
        path = Path(root).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        self._root = path.resolve(strict=True)
        (self._root / TMP_DIR).mkdir(exist_ok=True)
        self.uri = self._root.as_uri()

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self._root)!r})"

    def write(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        key, parts = self._parts(key)
        self._precheck(key, parts)
        try:
            return self._write(key, parts, chunks)
        except DiskFullError as exc:
            raise disk_full(f"artifact {key!r}", str(self._root), store="artifacts") from exc

    def _write(self, key: str, parts: Sequence[str], chunks: Iterable[bytes]) -> ObjectInfo:
        try:
            tmp_fd, tmp_path = tempfile.mkstemp(dir=self._root / TMP_DIR, prefix="w-")
        except OSError as exc:
            raise storage_failed(key, exc) from exc
        try:
            try:
                size, sha256 = stream_to(tmp_fd, chunks, key)
            finally:
                os.close(tmp_fd)
            st = self._commit(tmp_path, key, parts)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp_path)
            raise
        return ObjectInfo(key=key, size=size, modified=info(key, st).modified, sha256=sha256)

    def open(self, key: str) -> BinaryIO:
        key, parts = self._parts(key)
        with open_folders(self._root, parts[:-1], key) as fds:
            try:
                fd = os.open(parts[-1], FILE_FLAGS, dir_fd=fds[-1])
            except OSError as exc:
                raise explain(fds[-1], parts[-1], key) from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise not_found(key)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def stat(self, key: str) -> ObjectInfo:
        key, parts = self._parts(key)
        with open_folders(self._root, parts[:-1], key) as fds:
            return info(key, lstat_file(fds[-1], parts[-1], key))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Validate now, not at the first next(): a bad prefix fails where it is passed.
        return self._list(folder_prefix(prefix))

    def delete(self, key: str) -> None:
        key, parts = self._parts(key)
        with open_folders(self._root, parts[:-1], key) as fds:
            lstat_file(fds[-1], parts[-1], key)
            try:
                os.unlink(parts[-1], dir_fd=fds[-1])
            except FileNotFoundError:
                raise not_found(key) from None
            # Prune folders left empty, deepest first, so no empty shells accumulate.
            for depth in range(len(parts) - 1, 0, -1):
                try:
                    os.rmdir(parts[depth - 1], dir_fd=fds[depth - 1])
                except OSError:
                    break  # not empty, or removed by someone else: stop here

    def native_location(self, prefix: str) -> NativeLocation:
        """The absolute folder of ``prefix`` (symlinks on its path refused)."""
        return local_location(self._root, prefix)

    def cleanup(self, older_than: timedelta = timedelta(hours=1)) -> int:
        # A live write touches its temp file's mtime with every chunk, so only writes
        # stalled (or killed) for longer than the threshold are removed.
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        with os.scandir(self._root / TMP_DIR) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except (FileNotFoundError, IsADirectoryError):
                    continue
        return removed

    def _parts(self, key: str) -> tuple[str, Sequence[str]]:
        valid = validate_key(key)
        # Belt and braces over the descriptor walk: the resolved path must stay in the root.
        real = os.path.realpath(self._root / valid)
        if os.path.commonpath([real, self._root]) != str(self._root):
            raise symlink_refused(valid)
        return valid, valid.split("/")

    def _precheck(self, key: str, parts: Sequence[str]) -> None:
        # Refuse a symlinked or occupied path before streaming a large body for nothing.
        try:
            with open_folders(self._root, parts[:-1], key) as fds:
                check_target(fds[-1], parts[-1], key)
        except NotFoundError:
            return  # folders still to be created

    def _commit(self, tmp_path: str, key: str, parts: Sequence[str]) -> os.stat_result:
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                with open_folders(self._root, parts[:-1], key, create=True) as fds:
                    check_target(fds[-1], parts[-1], key)
                    os.replace(tmp_path, parts[-1], dst_dir_fd=fds[-1])
                    os.fsync(fds[-1])  # the rename itself must survive a power cut
                    return os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError as exc:
                # A concurrent delete pruned a folder we had just made: walk again.
                if attempt == _COMMIT_ATTEMPTS - 1 or not os.path.exists(tmp_path):
                    raise storage_failed(key, exc) from exc
            except OSError as exc:
                raise storage_failed(key, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _list(self, folder: str) -> Iterator[ObjectInfo]:
        names = folder.split("/")[:-1] if folder else []
        try:
            with open_folders(self._root, names, folder) as fds:
                yield from self._walk(fds[-1], folder)
        except NotFoundError:
            return

    def _walk(self, dir_fd: int, base: str) -> Iterator[ObjectInfo]:
        found: dict[str, tuple[str, os.stat_result]] = {}
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                if entry.name.startswith(RESERVED_PREFIX):
                    continue  # the temp folder, and anything else the store keeps for itself
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    # "a/" sorts where the keys below it sort, so a depth-first walk in this
                    # order yields keys in plain string order ("a.txt" < "a/b" < "a0").
                    found[entry.name + "/"] = (entry.name, st)
                elif stat.S_ISREG(st.st_mode):
                    found[entry.name] = (entry.name, st)
                # symlinks, FIFOs, sockets, devices: never listed, never followed
        for sort_name in sorted(found):
            name, st = found[sort_name]
            key = base + name
            if stat.S_ISREG(st.st_mode):
                if is_listable_key(key):
                    yield info(key, st)
            elif base.count("/") < MAX_DEPTH:
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue  # removed, or swapped for a symlink, since the scan
                try:
                    yield from self._walk(child, key + "/")
                finally:
                    os.close(child)
