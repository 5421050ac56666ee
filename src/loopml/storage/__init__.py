"""Blob storage: the artifact store interface, its backends and the factory that picks one.

``open_artifact_store("/data/loopml")`` or ``open_artifact_store("s3://bucket/prefix")``
returns an ``ArtifactStore``; callers receive it as an argument and never branch on the
backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field

from loopml.core.errors import ConfigurationError
from loopml.storage.backends.local import LocalArtifactStore as LocalArtifactStore
from loopml.storage.backends.local import LocalStoreConfig as LocalStoreConfig
from loopml.storage.backends.s3 import DEFAULT_PART_SIZE
from loopml.storage.backends.s3 import S3ArtifactStore as S3ArtifactStore
from loopml.storage.backends.s3 import S3StoreConfig as S3StoreConfig
from loopml.storage.base import ArtifactStore as ArtifactStore
from loopml.storage.base import ObjectInfo as ObjectInfo

SCHEMES = ("file", "s3")

ArtifactStoreConfig = Annotated[LocalStoreConfig | S3StoreConfig, Field(discriminator="type")]
"""Either backend's configuration, told apart by ``type`` ("local" or "s3")."""


def open_artifact_store(
    uri: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str = "us-east-1",
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_part_size: int = DEFAULT_PART_SIZE,
) -> ArtifactStore:
    """Open the artifact store at ``uri``.

    Args:
        uri: a folder (``/data/loopml``, ``./artifacts``, ``file:///data/loopml``) or
            ``s3://bucket/prefix``.
        s3_endpoint_url: S3 API endpoint for S3-compatible servers (MinIO, moto).
        s3_region: S3 region name.
        s3_access_key_id: S3 access key; ``None`` uses boto3's own credential chain.
        s3_secret_access_key: the secret paired with ``s3_access_key_id``.
        s3_part_size: multipart part size in bytes (5 MiB to 5 GiB).

    Raises:
        ConfigurationError: an empty URI, an unknown scheme (the message lists the valid
            ones), a ``file://`` URI naming another host, or an invalid bucket or prefix.
    """
    if not uri:
        raise ConfigurationError(
            "The artifact root is empty: expected a folder or an s3://bucket/prefix URI"
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    # One letter is a Windows drive ("C:\\artifacts"), not a scheme.
    if not scheme or len(scheme) == 1:
        return LocalArtifactStore(Path(uri))
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"Artifact root {uri!r} names host {parts.netloc!r}; a file:// root must be "
                "local, such as file:///data/loopml"
            )
        return LocalArtifactStore(Path(unquote(parts.path)))
    if scheme == "s3":
        return S3ArtifactStore(
            parts.netloc,
            parts.path.lstrip("/"),
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
            part_size=s3_part_size,
        )
    raise ConfigurationError(
        f"Unsupported artifact root scheme {scheme!r} in {uri!r}; valid schemes: "
        + ", ".join(repr(s) for s in SCHEMES),
        details={"valid_schemes": list(SCHEMES)},
    )


__all__ = [
    "SCHEMES",
    "ArtifactStore",
    "ArtifactStoreConfig",
    "LocalArtifactStore",
    "LocalStoreConfig",
    "ObjectInfo",
    "S3ArtifactStore",
    "S3StoreConfig",
    "open_artifact_store",
]
