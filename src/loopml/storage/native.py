"""Where a folder of the artifact store lives for native readers and writers (Delta Lake).

Delta Lake (``deltalake``) and Arrow do their own I/O through Rust's ``object_store``; they
need a URI and ``storage_options``, not loopml's ``ArtifactStore``. Each backend answers
``ArtifactStore.native_location(prefix)`` with this module's helpers.

Commit safety on S3: a Delta commit is the creation of ``_delta_log/<version>.json``, and
two writers must never both create the same version. loopml asks ``object_store`` for
conditional puts (``AWS_CONDITIONAL_PUT=etag``: ``PutObject`` with ``If-None-Match: *``),
which AWS S3 (since 2024), MinIO, Ceph RGW and moto honour; the loser of a race gets a
conflict and delta-rs retries on the next version. ``AWS_S3_ALLOW_UNSAFE_RENAME`` is never
set: on a server without conditional puts a commit fails loudly instead of silently
overwriting another writer's commit.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from loopml.core.errors import InvalidPathError
from loopml.core.keys import validate_prefix


@dataclass(frozen=True)
class NativeLocation:
    """A folder of the store as Delta Lake opens it.

    Attributes:
        uri: an absolute local path or ``s3://bucket/key/prefix``.
        storage_options: ``object_store`` options (endpoint, region, credentials, ...).
    """

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Never print credentials into logs.
        return f"NativeLocation({self.uri!r})"


def local_location(root: Path, prefix: str) -> NativeLocation:
    """The absolute folder for ``prefix`` under a local store's ``root``.

    Raises:
        InvalidPathError: the prefix is refused, or a symlink lies on its path (a native
            writer would follow it out of the root, RELIABILITY item 2).
    """
    folder = validate_prefix(prefix).rstrip("/")
    path = root
    for part in folder.split("/") if folder else []:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break  # the rest is still to be created, by the writer, as real folders
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            raise InvalidPathError(
                f"Invalid path {folder!r}: {path.name!r} is a symlink or a file, expected a "
                "folder; remove it from the store",
                details={"reason": "symlink or file on the path"},
            )
    return NativeLocation(uri=str(root / folder))


def s3_storage_options(
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> dict[str, str]:
    """The ``object_store`` options that reach the same bucket as the boto3 client.

    Without explicit keys ``object_store`` uses its own chain (environment, profile, role),
    as boto3 does.
    """
    options = {"AWS_REGION": region, "AWS_CONDITIONAL_PUT": "etag"}
    if endpoint_url:
        options["AWS_ENDPOINT_URL"] = endpoint_url
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        if endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if access_key_id and secret_access_key:
        options["AWS_ACCESS_KEY_ID"] = access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = secret_access_key
    return options


def s3_location(bucket: str, root: str, prefix: str, options: dict[str, str]) -> NativeLocation:
    """``s3://bucket/<root><prefix>`` with the store's options."""
    folder = validate_prefix(prefix).rstrip("/")
    return NativeLocation(uri=f"s3://{bucket}/{root}{folder}", storage_options=dict(options))


def free_bytes(loc: NativeLocation) -> int | None:
    """Bytes free to this process on the disk holding a local ``loc`` (its nearest folder
    that exists); ``None`` for an object store."""
    if "://" in loc.uri:
        return None
    return disk_free_bytes(Path(loc.uri))


def disk_free_bytes(path: Path) -> int | None:
    """Bytes free to this process on the disk holding ``path`` (its nearest folder that
    exists); ``None`` when none can be read."""
    for folder in (path, *path.parents):
        try:
            st = os.statvfs(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return st.f_bavail * st.f_frsize
    return None
