"""Open the backends a ``Settings`` names: the one place the server, the CLI's server-side
commands and the embedded SDK build them, so all three read the settings the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from loopml.settings import Settings
    from loopml.storage import ArtifactStore
    from loopml.store import MetadataStore as MetadataStore


def open_metadata_store(settings: Settings) -> MetadataStore:
    """The metadata database named by ``settings`` (not upgraded: callers decide)."""
    from loopml.store import MetadataStore

    return MetadataStore(
        settings.database_url,
        pool_size=settings.database.pool_size,
        busy_timeout_ms=settings.database.busy_timeout_ms,
    )


def database_file(settings: Settings) -> Path | None:
    """The file of the SQLite database ``settings`` name where it exists, else ``None``
    (another database, a file not made yet): a question that touches nothing."""
    from loopml.store import MetadataStore

    return MetadataStore.sqlite_file(settings.database_url)


def schema_head() -> str:
    """The newest schema revision (Alembic's) this version of loopml ships."""
    from loopml.store import head_revision

    return head_revision()


def open_artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store named by ``settings`` (a local folder or S3)."""
    from loopml.storage import open_artifact_store as open_store

    cfg = settings.artifacts
    secret = cfg.s3_secret_access_key
    return open_store(
        settings.artifact_root,
        s3_endpoint_url=cfg.s3_endpoint_url,
        s3_region=cfg.s3_region,
        s3_access_key_id=cfg.s3_access_key_id,
        s3_secret_access_key=secret.get_secret_value() if secret else None,
        s3_part_size=cfg.s3_part_size_bytes,
    )
