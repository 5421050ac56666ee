"""One settings tree for all of loopml.

Precedence, highest first (written once, here, and in docs/configuration.md):

1. values passed to ``Settings(...)`` in code;
2. environment variables ``LOOPML_<SECTION>_<FIELD>`` (``LOOPML_DATABASE_URL``,
   ``LOOPML_SERVER_PORT``) and ``LOOPML_HOME``;
3. the TOML file named by ``LOOPML_CONFIG``, else ``./loopml.toml`` when present, with the
   same keys in sections (``[database] url = "..."``);
4. the defaults below.

Library code receives a ``Settings`` object as an argument; only this module reads the
environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "LOOPML_CONFIG"
DEFAULT_CONFIG_FILE = "loopml.toml"

_MiB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseSettings(_Section):
    """Where loopml keeps its metadata."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database. Default: a SQLite file "
        "`loopml.db` in the home folder. PostgreSQL: `postgresql://user@host:5432/db` "
        "(driven by psycopg 3).",
    )
    pool_size: int = Field(
        default=5, ge=1, le=100, description="Connections kept open per process (PostgreSQL)."
    )
    busy_timeout_ms: int = Field(
        default=5000,
        ge=0,
        le=600_000,
        description="How long a SQLite writer waits for the lock before failing.",
    )
    auto_upgrade: bool = Field(
        default=True,
        description="Upgrade the schema when the server starts. Turn off for PostgreSQL in "
        "production and run `loopml db upgrade` explicitly.",
    )


class ArtifactSettings(_Section):
    """Where artifacts and the data lake live."""

    root: str | None = Field(
        default=None,
        description="Artifact root URI: a local folder (`/data/loopml` or `file:///data/...`) "
        "or `s3://bucket/prefix`. Default: the folder `artifacts` in the home folder.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 API endpoint, for S3-compatible stores (MinIO, Ceph, moto). Default: AWS.",
    )
    s3_region: str = Field(default="us-east-1", description="S3 region name.")
    s3_access_key_id: str | None = Field(
        default=None,
        description="S3 access key id. Default: boto3's own chain (env, profile, role).",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="S3 secret access key, paired with `s3_access_key_id`."
    )
    s3_part_size_bytes: int = Field(
        default=8 * _MiB,
        ge=5 * _MiB,
        le=5 * 1024 * _MiB,
        description="Part size of S3 multipart uploads; objects smaller than this are "
        "written with a single PUT.",
    )


class ServerSettings(_Section):
    """The API server started by `loopml up`."""

    host: str = Field(
        default="127.0.0.1",
        description="Interface to bind. Only loopback is accepted until authentication exists.",
    )
    port: int = Field(default=8765, ge=1, le=65535, description="TCP port to bind.")
    max_body_bytes: int = Field(
        default=10 * _MiB,
        ge=1024,
        description="Largest request body accepted by JSON routes; larger ones get 413 "
        "before the body is read.",
    )
    max_upload_bytes: int = Field(
        default=5 * 1024 * _MiB,
        ge=1024,
        description="Largest streamed upload (artifacts, files); larger ones get 413 as soon "
        "as the limit is crossed.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"],
        description="Host names accepted in the Host and Origin headers (against DNS "
        "rebinding and cross-site requests); the bind host is always added. `*` allows any.",
    )
    maintenance_interval_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often the server runs its housekeeping (marking runs whose "
        "heartbeat stopped as LOST, ...), in seconds.",
    )
    automation_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="How often schedules and triggers are checked (s)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Server log level."
    )


class ClientSettings(_Section):
    """How the CLI and SDK reach a server."""

    url: str = Field(default="http://127.0.0.1:8765", description="Base URL of the loopml server.")
    timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Timeout of each HTTP call, in seconds."
    )


class TrackingSettings(_Section):
    """Experiment tracking: runs and their heartbeats."""

    heartbeat_timeout_s: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="A RUNNING run whose last heartbeat is older than this is marked LOST "
        "(the SDK sends one every 10 s). Runs keep the timeout they were created with.",
    )


class LakeSettings(_Section):
    """Lake tables: housekeeping (compaction and vacuum) and the batching of record ingest."""

    compact_min_files: int = Field(
        default=64,
        ge=2,
        le=1_000_000,
        description="An ingest compacts its table when the table then has more than this "
        "many small files.",
    )
    small_file_bytes: int = Field(
        default=32 * _MiB,
        ge=1,
        description="A data file smaller than this counts as small for automatic compaction.",
    )
    vacuum_retention_hours: int = Field(
        default=168,
        ge=0,
        le=87_600,
        description="Default retention of `loopml tables vacuum`: files that left the table "
        "longer ago than this are freed, except those of versions a run or a dataset "
        "snapshot references.",
    )
    records_batch_rows: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Record ingest over HTTP gathers the posts to one table into one commit "
        "(one commit per table at a time); a commit starts as soon as this many records are "
        "waiting.",
    )
    records_batch_ms: float = Field(
        default=20.0,
        ge=0,
        le=60_000,
        description="A commit of records starts at the latest this many milliseconds after "
        "the first waiting record arrived, or earlier once as many posts wait as were in "
        "flight together last time. Higher: fewer, larger commits under light load; lower: "
        "faster answers. A post is answered once its commit is durable.",
    )
    records_max_per_post: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Most records one post may carry (its body is also bounded by "
        "`server.max_body_bytes`); send larger sets as a file.",
    )


class KubernetesSettings(_Section):
    """The Kubernetes deploy target: off until enabled, and then used by deployments that
    ask for `target: kubernetes` (see docs/kubernetes.md)."""

    enabled: bool = Field(default=False, description="Offer the kubernetes target to deployments.")
    image: str = Field(
        default="loopml:latest",
        min_length=1,
        max_length=500,
        description="The model-server image (built from the repository's Dockerfile).",
    )
    platform_url: str | None = Field(
        default=None,
        description="This platform's URL as pods reach it (to fetch packages and log "
        "predictions); required when enabled.",
    )
    namespace: str = Field(
        default="default",
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        description="The namespace deployments are applied to.",
    )
    kserve: bool = Field(
        default=False,
        description="Render KServe InferenceServices (scale to zero, canary percentages) "
        "instead of Deployment, Service and HorizontalPodAutoscaler.",
    )
    kubeconfig: Path | None = Field(
        default=None, description="A kubeconfig file; the default one when omitted."
    )
    context: str | None = Field(default=None, description="The kubeconfig context to use.")
    in_cluster: bool = Field(
        default=False, description="Use the service account of the pod loopml runs in."
    )


class Settings(BaseSettings):
    """Every loopml setting. See docs/configuration.md for the generated reference."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPML_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default=Path("~/.loopml"),
        description="Folder for the embedded defaults: the SQLite database and artifacts.",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def database_url(self) -> str:
        """The database URL in force: the configured one, or SQLite in the home folder."""
        return self.database.url or f"sqlite:///{self.home / 'loopml.db'}"

    @property
    def artifact_root(self) -> str:
        """The artifact root in force: the configured URI, or `artifacts` in the home."""
        return self.artifacts.root or str(self.home / "artifacts")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get(CONFIG_FILE_ENV) or DEFAULT_CONFIG_FILE
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(toml_path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        elif os.environ.get(CONFIG_FILE_ENV):
            raise FileNotFoundError(f"{CONFIG_FILE_ENV} names {toml_path!r}, which is not a file")
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from code overrides, the environment and the TOML file, in that order."""
    return Settings(**overrides)
