"""Pieces of the S3 backend: client, error translation, body reader and multipart upload.

boto3 and botocore are imported inside functions: importing ``loopml.storage`` must not cost
boto3's import time when the artifact root is a local folder.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from loopml.core.errors import (
    ConfigurationError,
    LoopmlError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

MAX_PARTS = 10_000
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_BAD_CREDENTIALS = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
)
_RETRYABLE = frozenset(
    {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling"}
)


def validate_bucket(name: str) -> str:
    """Return ``name`` if it follows the S3 bucket naming rules, else ConfigurationError."""
    if (
        not _BUCKET.fullmatch(name)
        or ".." in name
        or _IPV4.fullmatch(name)
        or name.startswith(("xn--", "sthree-"))
        or name.endswith(("-s3alias", "--ol-s3"))
    ):
        raise ConfigurationError(
            f"Invalid S3 bucket name {name!r}: expected 3 to 63 lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit, not an IP address",
            details={"bucket": name},
        )
    return name


def make_client(
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> S3Client:
    """A boto3 S3 client from its own session (the default session is not thread-safe)."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 5},
        "connect_timeout": 10,
        "read_timeout": 120,
        # Newer botocore adds CRC checksums to every upload by default, which several
        # S3-compatible servers (older MinIO, Ceph) reject; we carry our own SHA-256.
        "request_checksum_calculation": "when_required",
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}  # what MinIO and friends expect
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(**options),
    )


def _translate_client_error(exc: ClientError, key: str) -> LoopmlError | None:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in _NOT_FOUND:
        return NotFoundError(f"No artifact at {key!r}", details={"key": key})
    if code == "NoSuchBucket":
        return ConfigurationError(
            f"The S3 bucket of the artifact store does not exist ({exc}); create it or fix "
            "the artifact root",
            details={"key": key},
        )
    if code in _BAD_CREDENTIALS:
        return ConfigurationError(
            f"S3 refused loopml's credentials ({code}) while accessing {key!r}; check the "
            "access key and the bucket policy",
            details={"key": key, "code": code},
        )
    if status >= 500 or code in _RETRYABLE:
        return ServiceUnavailableError(
            f"S3 failed while accessing {key!r} ({code or status}); retry later",
            details={"key": key, "code": code},
        )
    return None


@contextmanager
def s3_errors(key: str) -> Iterator[None]:
    """Turn botocore errors into loopml errors: 404 → NotFoundError, network or 5xx →
    ServiceUnavailableError, credentials or a missing bucket → ConfigurationError. Other
    client errors (a bug of ours) propagate unchanged."""
    from botocore import exceptions as boto

    try:
        yield
    except boto.ClientError as exc:
        mapped = _translate_client_error(exc, key)
        if mapped is None:
            raise
        raise mapped from exc
    except (boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError) as exc:
        raise ServiceUnavailableError(
            f"S3 could not be reached while accessing {key!r}: {exc}; retry later",
            details={"key": key},
        ) from exc
    except (boto.NoCredentialsError, boto.PartialCredentialsError) as exc:
        raise ConfigurationError(
            f"No usable S3 credentials ({exc}); set the access key id and secret",
        ) from exc


class BodyReader(io.RawIOBase):
    """A ``get_object`` body as a raw stream whose errors are loopml errors.

    Wrapped in ``io.BufferedReader`` it is a real binary file object: ``read(n)``, ``read()``,
    iteration, ``close()`` and ``with``.
    """

    def __init__(self, body: StreamingBody, key: str) -> None:
        super().__init__()
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with s3_errors(self._key):
            data = self._body.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class MultipartUpload:
    """One multipart upload; ``discard`` aborts it, or deletes its object once complete."""

    def __init__(self, client: S3Client, bucket: str, key: str, *, label: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self._label = label  # the user's key, for error messages
        self._parts: list[CompletedPartTypeDef] = []
        self._completed = False
        with s3_errors(label):
            created = client.create_multipart_upload(Bucket=bucket, Key=key)
        self.upload_id = created["UploadId"]

    def send(self, data: bytes) -> None:
        """Upload the next part (every part but the last must be at least 5 MiB)."""
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise PayloadTooLargeError(
                f"Artifact {self._label!r} needs more than {MAX_PARTS} parts; raise the S3 "
                "part size",
                details={"key": self._label},
            )
        with s3_errors(self._label):
            sent = self.client.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    def complete(self) -> None:
        """Assemble the parts into the object."""
        with s3_errors(self._label):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._completed = True

    def discard(self) -> None:
        """Best effort: abort the upload, or delete the completed object; ``cleanup`` collects
        whatever this cannot remove (the network may be what failed)."""
        try:
            if self._completed:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
            else:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
                )
        except Exception:  # the original error matters more than this one
            logger.warning("could not remove temporary S3 upload %s", self.key, exc_info=True)
