"""Descriptor-relative filesystem helpers of the local backend.

Every path is walked one folder at a time, each opened with ``O_NOFOLLOW | O_DIRECTORY``
relative to the previous folder's descriptor: a folder swapped for a symlink between a check
and its use makes the open fail instead of leading outside the root.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from loopml.core.disk import disk_full, is_disk_full
from loopml.core.errors import (
    ConflictError,
    InvalidPathError,
    LoopmlError,
    NotFoundError,
    ServiceUnavailableError,
)
from loopml.storage.base import ObjectInfo

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK so that a FIFO planted in the root cannot hang open(); cleared again for files.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def not_found(key: str) -> NotFoundError:
    return NotFoundError(f"No artifact at {key!r}", details={"key": key})


def symlink_refused(key: str) -> InvalidPathError:
    return InvalidPathError(
        f"Invalid path {key!r}: it goes through a symbolic link, which the artifact store "
        "never follows",
        details={"reason": "symlink"},
    )


def storage_failed(key: str, exc: OSError) -> ServiceUnavailableError:
    if is_disk_full(exc):  # LocalArtifactStore.write names its folder
        return disk_full(f"artifact {key!r}", "the artifact store", store="artifacts")
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    return ServiceUnavailableError(
        f"Writing artifact {key!r} failed: {exc.strerror or exc} ({name}); nothing was "
        "stored. Check free space and permissions of the artifact folder, then retry.",
        details={"key": key, "errno": name},
    )


def info(key: str, st: os.stat_result, sha256: str | None = None) -> ObjectInfo:
    modified = datetime.fromtimestamp(st.st_mtime, UTC)
    return ObjectInfo(key=key, size=st.st_size, modified=modified, sha256=sha256)


@contextmanager
def open_folders(
    root: Path, names: Sequence[str], key: str, *, create: bool = False
) -> Iterator[list[int]]:
    """Open ``root``, then each folder of ``names`` below it, following no symlink.

    Yields the descriptors, root first. Raises NotFoundError for a missing folder, except
    with ``create``, where missing folders are made (and FileNotFoundError means a concurrent
    delete pruned one: the caller walks again).
    """
    fds = [os.open(root, DIR_FLAGS)]
    try:
        for name in names:
            if create:
                with suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fds[-1])
            try:
                fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
            except FileNotFoundError:
                if create:
                    raise
                raise not_found(key) from None
            except OSError as exc:
                raise explain(fds[-1], name, key, folder=True, create=create) from exc
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def explain(
    parent: int, name: str, key: str, *, folder: bool = False, create: bool = False
) -> LoopmlError:
    """Why ``name`` under ``parent`` could not be opened: a symlink, or not the right kind."""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return not_found(key)
    if stat.S_ISLNK(mode):
        return symlink_refused(key)
    if folder and create:
        return ConflictError(
            f"Cannot write {key!r}: {name!r} on its path is a file, not a folder",
            details={"key": key},
        )
    return not_found(key)


def lstat_file(parent: int, name: str, key: str) -> os.stat_result:
    """The stat of regular file ``name`` (NotFoundError if absent or not a file)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        raise not_found(key) from None
    if stat.S_ISLNK(st.st_mode):
        raise symlink_refused(key)
    if not stat.S_ISREG(st.st_mode):
        raise not_found(key)
    return st


def check_target(parent: int, name: str, key: str) -> None:
    """Refuse to write over a symlink or a folder; a missing or regular file is fine."""
    try:
        mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise symlink_refused(key)
    if stat.S_ISDIR(mode):
        raise ConflictError(
            f"Cannot write {key!r}: a folder of that name exists", details={"key": key}
        )


def stream_to(fd: int, chunks: Iterable[bytes], key: str) -> tuple[int, str]:
    """Write and hash ``chunks`` into ``fd``, then fsync; returns (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:  # an error raised by the producer propagates unchanged
        digest.update(chunk)
        size += len(chunk)
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise storage_failed(key, exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise storage_failed(key, exc) from exc
    return size, digest.hexdigest()
