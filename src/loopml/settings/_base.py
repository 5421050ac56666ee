"""The settings sections every process reads: database, artifacts, server, streams, client,
auth, tracking, MLflow, the lake and the feature store (the tree itself is
``loopml.settings.Settings``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from loopml.core.features import OnlineStoreConfig, SqliteOnlineStoreConfig

CONFIG_FILE_ENV = "LOOPML_CONFIG"
DEFAULT_CONFIG_FILE = "loopml.toml"

_MiB = 1024 * 1024
_GiB = 1024 * _MiB


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
        description="Create the schema of an empty database when a process starts, so a new "
        "home needs no setup. A database at an older revision is never upgraded by a start: "
        "run `loopml db upgrade` (or `loopml up --upgrade`). Turn off for PostgreSQL in "
        "production to create its schema explicitly too.",
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
        description="Interface to bind. A non-loopback address (`0.0.0.0`, a LAN address) "
        "needs `auth.enabled`: without it `loopml up` refuses to start; loopback needs nothing.",
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
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (`scheme://host:port`) besides the server's own that may "
        "send state-changing requests, such as a page served on another port. Every other "
        "origin, `Origin: null` and form content types without a token are refused (CSRF).",
    )
    maintenance_interval_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often the server runs its housekeeping (marking runs whose "
        "heartbeat stopped as LOST, ...), in seconds.",
    )
    disk_reserve_bytes: int = Field(
        default=8 * _MiB,
        ge=0,
        le=1024 * _MiB,
        description="Space kept in a file in the home (`disk.reserve`, its blocks allocated) "
        "and given back when a table delete, a vacuum or a gc starts on a full disk, so "
        "that they can record what they do and free space; made again once the disk has "
        "room for twice this. 0: no reserve (docs/operations.md, A full disk).",
    )
    heap_trim_step_bytes: int = Field(
        default=16 * _MiB,
        ge=0,
        le=4096 * _MiB,
        description="Once the server's private memory has grown by this much since the last "
        "time, its housekeeping round gives the C allocator's freed pages back to the "
        "system (`malloc_trim`; glibc only): after a burst of ingest and queries 35-40 MB "
        "the allocator kept otherwise. 0: never (docs/operations.md, Memory).",
    )
    malloc_arenas: int | None = Field(
        default=None,
        ge=0,
        le=1024,
        description="The most malloc arenas of the server process (glibc's `M_ARENA_MAX`): "
        "empty for one per CPU core, 0 for glibc's own (8 per core). Each arena keeps what "
        "its threads freed; capped at 2 on a 2-core machine, a burst of ingest and queries "
        "left about 25 MB less resident (docs/operations.md, Memory).",
    )
    automation_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="How often schedules and triggers are checked (s)."
    )
    streams: bool = Field(
        default=True,
        description="Run a consumer process for each stream source (NATS JetStream, Redis "
        "Streams) in this server; turn off where `loopml worker --streams` runs them.",
    )
    worker: bool = Field(
        default=True,
        description="Run a pipeline worker inside this server (configured by `worker`); turn "
        "off where a pool of `loopml worker` processes runs the steps.",
    )
    arrow_memory_pool: Literal["system", "mimalloc", "jemalloc"] = Field(
        default="system",
        description="The allocator of the server's Arrow buffers (ingest, table reads). "
        "`system` (malloc) gives freed memory back; Arrow's own default, `mimalloc`, kept "
        "15-30 MB more resident after a burst of ingest and queries; `jemalloc` measured "
        "as `system` (docs/operations.md, Memory).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Server log level."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How `loopml up` writes its own log on stderr: `text` (uvicorn's lines) "
        "or `json`, one object per line (`ts`, `level`, `logger`, `message`, `exc_info`) "
        "for ELK, Loki and other collectors; `json` also writes loopml's own records at "
        "`log_level`.",
    )
    log_file: str = Field(
        default="logs/loopml.log",
        max_length=1000,
        description="Where `loopml up` also keeps its log (uvicorn's and loopml's records at "
        "`log_level`, one line each in `log_format`; `text` lines start with time and level), "
        "relative to the home unless absolute; made 0600 in a 0700 folder. Empty: stderr only. "
        "Searched by `loopml logs --platform`.",
    )
    log_max_bytes: int = Field(
        default=10 * _MiB,
        ge=4096,
        description="The log file is rotated past this size (`loopml.log.1`, ...).",
    )
    log_backups: int = Field(
        default=2,
        ge=1,
        le=9,
        description="How many rotated copies of the log file are kept, and searched.",
    )


class StreamsSettings(_Section):
    """What the stream consumers need besides a stream's definition."""

    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        description="The SASL password of every Kafka source whose URL names `sasl.username` "
        "(env LOOPML_STREAMS_KAFKA_SASL_PASSWORD): kept here because a stream's definition, "
        "stored in the metadata database, never holds a secret (docs/streams.md, Kafka).",
    )


class ClientSettings(_Section):
    """How the CLI and SDK reach a server."""

    url: str = Field(default="http://127.0.0.1:8765", description="Base URL of the loopml server.")
    timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="Timeout of each HTTP call, in seconds."
    )


class AuthSettings(_Section):
    """Users, roles and API tokens (see docs/security.md)."""

    enabled: bool = Field(
        default=False,
        description="Require a token (Authorization: Bearer, or a browser session's cookie) "
        "on every route but health and login. Off, loopml trusts every caller and listens on "
        "loopback only; on, it may listen beyond loopback (put it behind TLS).",
    )
    login_failures_per_minute: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="Failed logins and token checks allowed per client address per minute; "
        "past it, 429 until the minute has passed.",
    )
    session_hours: int = Field(
        default=12,
        ge=1,
        le=24 * 30,
        description="How long a browser session (`POST /api/v1/auth/session`, the portal's "
        "login) lasts: its token and its `HttpOnly` cookie expire together after this many "
        "hours. Short, because a browser is where a session is most easily left open.",
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


class MlflowSettings(_Section):
    """The MLflow-compatible REST API (``/api/2.0/mlflow/...``): where MLflow clients log."""

    project: str = Field(
        default="default",
        min_length=1,
        max_length=63,
        description="The loopml project that MLflow clients' experiments, runs and registered "
        "models belong to (MLflow has no projects).",
    )
    default_experiment: str = Field(
        default="Default",
        min_length=1,
        max_length=200,
        description="The experiment MLflow's experiment id '0' (a client that names none) "
        "logs to; created on first use.",
    )
    convert_workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="MLflow-format models (a pickle) registered through the MLflow API are "
        "packaged by a sandboxed converter on the server (docs/mlflow.md); how many run at "
        "once. Others wait their turn, PACKAGING.",
    )
    register_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=60,
        description="How long MLflow's `model-versions/create` of an MLflow-format model waits "
        "for its conversion before it answers: settled within it, the answer is the version "
        "READY (or FAILED, with the reason) and MLflow's client, which polls a "
        "PENDING_REGISTRATION version every 3 s, needs no poll; otherwise PENDING_REGISTRATION "
        "and the conversion goes on. 0 answers at once.",
    )
    convert_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=86_400,
        description="Wall-clock limit of one conversion in the sandbox; past it the converter's "
        "processes are killed and the version FAILS. Building its environment (pip, in the "
        "sandbox too) has the same limit of its own; so do the CPU, memory, process and "
        "file-size limits below.",
    )
    convert_stale_s: float = Field(
        default=600.0,
        ge=30,
        le=86_400,
        description="A server says on every housekeeping round (server.maintenance_interval_s) "
        "that it is still packaging the versions it took; a PACKAGING version whose server "
        "has not said so for this long (it stopped, on this host or another sharing the "
        "database) is taken over by another server's housekeeping, which converts it again. "
        "A server's own stopped process's versions are taken over at its start.",
    )
    convert_cpu_s: int = Field(
        default=600,
        ge=1,
        description="CPU seconds the converter may use (RLIMIT_CPU).",
    )
    convert_memory_bytes: int = Field(
        default=4 * _GiB,
        ge=64 * _MiB,
        description="Address space of each converter process (RLIMIT_AS).",
    )
    convert_max_processes: int = Field(
        default=256,
        ge=8,
        description="Processes and threads the converter may have at once (RLIMIT_NPROC, "
        "against fork bombs). Counted per user: each conversion's own uid when the server "
        "runs as root, the server's own user otherwise.",
    )
    convert_max_bytes: int = Field(
        default=2 * _GiB,
        ge=_MiB,
        description="Largest MLflow model (all its files) copied into the sandbox, and largest "
        "file the converter, or the pip building its environment, may write (RLIMIT_FSIZE).",
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


class FeaturesSettings(_Section):
    """The feature store: where online feature values live, and how materializing writes."""

    online: OnlineStoreConfig = Field(
        default_factory=SqliteOnlineStoreConfig,
        description='The online store: `{type = "sqlite", path = "..."}` (the default: '
        '`online.db` under the home) or `{type = "redis", url = "redis://host:6379/0", '
        'key_prefix = "loopml:features"}`; in the environment as JSON, '
        '`LOOPML_FEATURES_ONLINE=\'{"type": "redis"}\'`.',
    )
    materialize_chunk_rows: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Entities written to the online store per batch while materializing.",
    )
    materialize_spill_bytes: int = Field(
        default=32 * _GiB,
        ge=0,
        description="Disk a materialize may use when finding each entity's newest row takes "
        "more than the query's memory budget, and a training set when its join and sort do "
        "(a temporary folder, deleted after it); 0 turns spilling off, and a view or "
        "training set larger than the budget holds fails.",
    )


class CodesetsSettings(_Section):
    """Codesets: versioned trees of training code (docs/codesets.md)."""

    max_bytes: int = Field(
        default=100 * _MiB,
        ge=1,
        description="Largest codeset version: the total bytes of its files (checked by the "
        "CLI while packing and by the server on upload); larger ones are refused with 413.",
    )
    max_files: int = Field(
        default=20_000,
        ge=1,
        le=10_000_000,
        description="Most files in one codeset version.",
    )
    repository_roots: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Folders on the server under which a codeset's webhook may read a git "
        "repository (`loopml codesets webhook NAME --repository PATH`). Empty (the default): "
        "no codeset reads a repository on the server, so an editor cannot point one at "
        "files outside these folders.",
    )
