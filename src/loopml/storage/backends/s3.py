"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto).

Keys live under an optional prefix (``s3://bucket/prefix/<key>``). An object up to one part
(``part_size``) is written with a single ``put_object``; a larger one with a multipart upload,
aborted on any error. Either way the final key only ever holds a complete object.

Why large objects go through a temporary key: the object's SHA-256 is stored as user metadata
``sha256`` so that ``stat`` can return it, but S3 fixes metadata when an upload *starts*, and a
streamed body's hash is only known at its end. S3's own checksums do not help: for multipart
uploads SHA-256 is a checksum of the part checksums, not of the object. So a multipart upload
goes to ``<prefix>/.loopml-tmp/<uuid>``, and once complete it is copied server-side to the
final key with ``MetadataDirective=REPLACE`` and the hash (``client.copy``: a single
``CopyObject`` or, for big objects, a parallel ``UploadPartCopy``; the data never comes back
through this process), then the temporary object is deleted. The copy is the atomic
publication step. Its cost is server-side I/O for objects larger than one part only;
small objects keep the single PUT.

``cleanup`` aborts incomplete multipart uploads under the prefix (those of a killed writer,
on the temporary key or on a final key mid-copy) and deletes temporary objects, both older
than the threshold. ``list`` cannot return ``sha256`` (S3 listings carry no user metadata;
fetching it would cost one request per object), so it is ``None`` there.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from loopml.core.errors import ConfigurationError, InvalidPathError, ServiceUnavailableError
from loopml.core.keys import RESERVED_PREFIX, validate_key
from loopml.storage.backends._s3_support import (
    BodyReader,
    MultipartUpload,
    make_client,
    s3_errors,
    validate_bucket,
)
from loopml.storage.base import ArtifactStore, ObjectInfo, folder_prefix, is_listable_key
from loopml.storage.native import NativeLocation, s3_location, s3_storage_options

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_MiB = 1024 * 1024
MIN_PART_SIZE = 5 * _MiB
MAX_PART_SIZE = 5 * 1024 * _MiB
DEFAULT_PART_SIZE = 8 * _MiB
TMP_FOLDER = f"{RESERVED_PREFIX}-tmp/"
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts


class S3StoreConfig(BaseModel):
    """Configuration of an ``S3ArtifactStore``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["s3"]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    part_size: int = Field(default=DEFAULT_PART_SIZE, ge=MIN_PART_SIZE, le=MAX_PART_SIZE)

    def build(self) -> S3ArtifactStore:
        """Open the store this configuration describes."""
        secret = self.secret_access_key
        return S3ArtifactStore(
            self.bucket,
            self.prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            part_size=self.part_size,
        )


class S3ArtifactStore(ArtifactStore):
    """An ``ArtifactStore`` over an S3 bucket.

    Args:
        bucket: the bucket name; it must exist.
        prefix: folder inside the bucket that is the store's root (validated like a key).
        endpoint_url: S3 API endpoint for S3-compatible servers; ``None`` for AWS.
        region: region name.
        access_key_id: access key; ``None`` uses boto3's own chain (env, profile, role).
        secret_access_key: secret paired with ``access_key_id``.
        part_size: multipart part size, 5 MiB to 5 GiB; also the most a write buffers.
        client: a ready boto3 S3 client, used instead of building one.

    Raises:
        ConfigurationError: invalid bucket name, prefix or part size.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        client: S3Client | None = None,
    ) -> None:
        self._bucket = validate_bucket(bucket)
        try:
            self._root = folder_prefix(prefix)
        except InvalidPathError as exc:
            raise ConfigurationError(f"Invalid S3 prefix: {exc.message}") from exc
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigurationError(
                f"S3 part size {part_size} is out of range: expected {MIN_PART_SIZE} (5 MiB) "
                f"to {MAX_PART_SIZE} (5 GiB) bytes"
            )
        self._part_size = part_size
        self._client = client or make_client(endpoint_url, region, access_key_id, secret_access_key)
        self._native = s3_storage_options(endpoint_url, region, access_key_id, secret_access_key)
        self.uri = f"s3://{bucket}/{self._root}".rstrip("/")

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.uri!r})"

    def write(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        key = validate_key(key)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload: MultipartUpload | None = None
        try:
            for chunk in chunks:  # an error raised by the producer propagates unchanged
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                # Strictly more than one part: an object of exactly one part is a single PUT.
                while len(buffer) > self._part_size:
                    if upload is None:
                        upload = MultipartUpload(
                            self._client, self._bucket, self._tmp_key(), label=key
                        )
                    upload.send(bytes(buffer[: self._part_size]))
                    del buffer[: self._part_size]
            sha256 = digest.hexdigest()
            if upload is None:
                with s3_errors(key):
                    self._client.put_object(
                        Bucket=self._bucket,
                        Key=self._root + key,
                        Body=bytes(buffer),
                        Metadata={"sha256": sha256},
                    )
            else:
                upload.send(bytes(buffer))
                upload.complete()
                self._publish(upload.key, key, sha256)
        finally:
            # On success this deletes the temporary object; on failure it aborts the upload.
            if upload is not None:
                upload.discard()
        return ObjectInfo(key=key, size=size, modified=datetime.now(UTC), sha256=sha256)

    def open(self, key: str) -> BinaryIO:
        key = validate_key(key)
        with s3_errors(key):
            got = self._client.get_object(Bucket=self._bucket, Key=self._root + key)
        return _buffered(BodyReader(got["Body"], key))

    def stat(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        with s3_errors(key):
            head = self._client.head_object(Bucket=self._bucket, Key=self._root + key)
        return ObjectInfo(
            key=key,
            size=head["ContentLength"],
            modified=head["LastModified"].astimezone(UTC),
            sha256=head.get("Metadata", {}).get("sha256"),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Validate now, not at the first next(): a bad prefix fails where it is passed.
        return self._list(folder_prefix(prefix))

    def delete(self, key: str) -> None:
        # S3 deletes are silent for missing keys; the interface promises NotFoundError.
        key = self.stat(key).key
        with s3_errors(key):
            self._client.delete_object(Bucket=self._bucket, Key=self._root + key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder ``prefix`` in batches of 1000 keys."""
        folder = folder_prefix(prefix)
        if not folder:
            return super().delete_prefix(folder)  # refuses the empty prefix
        keys = [self._root + info.key for info in self.list(folder)]
        failed = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": k} for k in keys[start : start + _DELETE_BATCH]
            ]
            with s3_errors(folder):
                done = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                )
            failed += len(done.get("Errors", []))
        if failed:
            raise ServiceUnavailableError(
                f"S3 refused to delete {failed} of {len(keys)} objects under {folder!r}; retry",
                details={"prefix": folder, "failed": failed},
            )
        return len(keys)

    def native_location(self, prefix: str) -> NativeLocation:
        """``s3://bucket/...`` of ``prefix``, with conditional-put commits (see ``native``)."""
        return s3_location(self._bucket, self._root, prefix, self._native)

    def cleanup(self, older_than: timedelta = timedelta(hours=1)) -> int:
        cutoff = datetime.now(UTC) - older_than
        removed = 0
        with s3_errors(self._root or "/"):
            pages = self._client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self._bucket, Prefix=self._root):
                for up in page.get("Uploads", []):
                    if _started(up["Key"], up["Initiated"]) <= cutoff:
                        self._client.abort_multipart_upload(
                            Bucket=self._bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        removed += 1
            for obj in self._objects(self._root + TMP_FOLDER):
                if _started(obj[0], obj[2]) <= cutoff:
                    self._client.delete_object(Bucket=self._bucket, Key=obj[0])
                    removed += 1
        return removed

    # ------------------------------------------------------------------ helpers

    def _tmp_key(self) -> str:
        # The start time in the name lets cleanup judge age even where a server reports a
        # bogus upload start (moto says 2010 for every multipart upload).
        return f"{self._root}{TMP_FOLDER}{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex}"

    def _publish(self, tmp_key: str, key: str, sha256: str) -> None:
        from boto3.s3.transfer import TransferConfig

        with s3_errors(key):
            self._client.copy(
                CopySource={"Bucket": self._bucket, "Key": tmp_key},
                Bucket=self._bucket,
                Key=self._root + key,
                ExtraArgs={"Metadata": {"sha256": sha256}, "MetadataDirective": "REPLACE"},
                Config=TransferConfig(
                    multipart_threshold=self._part_size, multipart_chunksize=self._part_size
                ),
            )

    def _objects(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        pages = self._client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self._bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["Size"], obj["LastModified"].astimezone(UTC)

    def _list(self, folder: str) -> Iterator[ObjectInfo]:
        # S3 lists in UTF-8 byte order, which is code point order: already sorted by key.
        with s3_errors(folder or "/"):
            for full_key, size, modified in self._objects(self._root + folder):
                key = full_key[len(self._root) :]
                if not key.startswith(TMP_FOLDER) and is_listable_key(key):
                    yield ObjectInfo(key=key, size=size, modified=modified)


def _started(key: str, reported: datetime) -> datetime:
    """When an upload or temporary object began: the later of what the server reports and
    the time in a temporary key's name, so that nothing possibly in flight looks old."""
    stamp = key.rpartition(TMP_FOLDER)[2].partition("-")[0] if TMP_FOLDER in key else ""
    if stamp.isdigit():
        return max(reported.astimezone(UTC), datetime.fromtimestamp(int(stamp) / 1000, UTC))
    return reported.astimezone(UTC)


def _buffered(raw: BodyReader) -> BinaryIO:
    return io.BufferedReader(raw, buffer_size=256 * 1024)
