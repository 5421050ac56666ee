"""The artifact store interface: blobs under validated keys, written atomically.

A backend implements six methods (``write``, ``open``, ``stat``, ``list``, ``delete``,
``cleanup``); the helpers above them (``exists``, ``read_bytes``, ``delete_prefix``, ...) are
written once here. Every method that takes a key or prefix runs it through
``loopml.core.keys`` before touching storage, so a hostile key is refused with
``InvalidPathError`` (HTTP 400) whatever the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO

from loopml.core.errors import ConfigurationError, InvalidPathError, NotFoundError
from loopml.core.keys import validate_key, validate_prefix
from loopml.storage.native import NativeLocation

DEFAULT_CHUNK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    Attributes:
        key: the validated key, relative to the store root.
        size: size in bytes.
        modified: last modification time, timezone-aware UTC.
        sha256: hex SHA-256 of the content. Always set by ``write``; set by ``stat`` and
            ``list`` only where the backend records it (S3 ``stat``), else ``None``.
    """

    key: str
    size: int
    modified: datetime
    sha256: str | None = None


def folder_prefix(prefix: str) -> str:
    """Validate a listing prefix and give it folder form: ``""`` or ``"a/b/"``.

    A prefix without a trailing slash names a folder too (``"a"`` lists what ``"a/"`` lists),
    so ``list("run")`` never returns ``run2/...``.
    """
    valid = validate_prefix(prefix)
    return valid if not valid or valid.endswith("/") else valid + "/"


def is_listable_key(key: str) -> bool:
    """Whether a name found in storage is a key this store may list.

    Files put there by hand or by other tools, under names no key can have, are skipped.
    """
    try:
        return validate_key(key) == key
    except InvalidPathError:
        return False


class ArtifactStore(ABC):
    """Blobs under slash-separated keys, with atomic writes and streaming reads.

    Attributes:
        uri: the root URI the store was opened at (``file:///...`` or ``s3://bucket/prefix``).
    """

    uri: str

    @abstractmethod
    def write(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Stream ``chunks`` (any sizes) into the object ``key``, hashing while writing.

        Atomic: nothing is visible under ``key`` until the write completes, and an existing
        object is replaced in one step. On any exception, including one raised by ``chunks``
        itself, nothing is left under ``key``, temporary data is removed and the exception
        propagates.

        Returns:
            The new object's info, with ``sha256`` set.

        Raises:
            InvalidPathError: the key is refused.
            ServiceUnavailableError: the storage failed mid-write (disk full, connection lost).
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open the object for reading; the caller closes it (it is a context manager).

        Raises:
            NotFoundError: no object under ``key``.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Describe the object ``key``.

        Raises:
            NotFoundError: no object under ``key``.
        """

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under the folder ``prefix``, recursively, sorted by key.

        ``prefix`` is a folder: ``"a"`` and ``"a/"`` both list ``a/...`` (and not ``a`` itself
        nor ``ab/...``); ``""`` lists everything. Internal temporary data is never listed.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object ``key``.

        Raises:
            NotFoundError: no object under ``key``.
        """

    @abstractmethod
    def cleanup(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove temporary data left by interrupted writes (a killed process) older than
        ``older_than``; returns how many items were removed.

        Writes still in flight are younger than the threshold, so keep it well above the
        longest expected upload.
        """

    def native_location(self, prefix: str) -> NativeLocation:
        """The folder ``prefix`` as a URI plus ``storage_options`` for Delta Lake and Arrow.

        Not abstract: a backend that native readers cannot reach keeps this refusal.

        Raises:
            ConfigurationError: this backend has no native location.
            InvalidPathError: the prefix is refused.
        """
        raise ConfigurationError(
            f"{type(self).__name__} cannot hold lake tables: use a local folder or S3"
        )

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key`` (``InvalidPathError`` if refused)."""
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def iter_bytes(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the object's content in chunks of at most ``chunk_size`` bytes."""
        with self.open(key) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Write ``data`` as the whole object ``key`` (see ``write``)."""
        return self.write(key, [data])

    def read_bytes(self, key: str) -> bytes:
        """The whole content of ``key``; for small objects only."""
        with self.open(key) as stream:
            return stream.read()

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder ``prefix``; returns how many were deleted.

        An empty prefix is refused: emptying a whole store is never one call away from a
        missing variable.
        """
        folder = folder_prefix(prefix)
        if not folder:
            raise InvalidPathError(
                "Invalid path '': delete_prefix needs a folder such as 'runs/42/'",
                details={"reason": "empty prefix"},
            )
        count = 0
        # Materialize first: deleting while a backend lists the same folder is undefined.
        for info in [*self.list(folder)]:
            try:
                self.delete(info.key)
            except NotFoundError:
                continue  # deleted concurrently; the goal is reached either way
            count += 1
        return count
