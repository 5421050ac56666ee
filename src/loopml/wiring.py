"""Open the backends a ``Settings`` names: the one place the server, the CLI's server-side
commands and the embedded SDK build them, so all three read the settings the same way."""

from __future__ import annotations

import signal
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from loopml.core.errors import ConfigurationError

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


# ------------------------------------------------------------------ a Ray cluster
# The worker's Ray executor (``pipelines.backends.ray``) and batch scoring on Ray
# (``predictions.ray_batch``) join the same cluster, named by the same settings.

_RAY_INSTALL = "pip install 'loopml[ray]'"


def import_ray(purpose: str) -> Any:
    """The ``ray`` module, for ``purpose`` (named in the error).

    Raises:
        ConfigurationError: Ray is not installed here.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigurationError(
            f"{purpose} needs Ray, which is not installed in this environment ({exc}): "
            f"{_RAY_INSTALL}"
        ) from exc
    return ray


def init_ray(ray: Any, address: str | None) -> None:
    """``ray.init(address)`` as a driver, keeping this process's SIGTERM handler: ray.init
    sets its own (exit at once), and the worker's and the server's stop their work first."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, log_to_driver=False)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _this_machine() -> set[str]:
    import psutil

    names = {"localhost", "::1", socket.gethostname().lower(), socket.getfqdn().lower()}
    for addresses in psutil.net_if_addrs().values():
        for found in addresses:
            if found.family in (socket.AF_INET, socket.AF_INET6):
                names.add(found.address.split("%", 1)[0].lower())
    return names


def address_host(address: str) -> str:
    """The host of a Ray address (``host:port``, ``[v6]:port``), lowercased."""
    return (urlsplit(f"//{address}").hostname or address).lower()


def is_local_address(address: str | None) -> bool:
    """Whether ``address`` is on this machine: unset and ``auto`` are (a cluster ``ray.init``
    starts or finds here), as are loopback and this machine's own names and addresses."""
    if address in (None, "", "auto", "local"):
        return True
    assert address is not None
    host = address_host(address)
    return host.startswith("127.") or host in _this_machine()


def refuse_local_storage(address: str | None, settings: Settings, *, database: bool = True) -> None:
    """Refuse a cluster on other machines when the processes there could not reach this
    machine's artifact folder (and lake), or, with ``database``, its SQLite file.

    Raises:
        ConfigurationError: naming the cluster and what to use instead.
    """
    if is_local_address(address):
        return
    problems = []
    root = settings.artifact_root
    if urlsplit(root).scheme.lower() not in ("s3",):
        problems.append(
            f"the artifact store (and lake) is the local folder {root!r} (artifacts.root): use "
            "an s3:// root every node reaches"
        )
    if database and settings.database_url.startswith("sqlite"):
        problems.append(
            "the metadata database is a SQLite file on this machine (database.url): use PostgreSQL"
        )
    if problems:
        raise ConfigurationError(
            f"the Ray cluster at {address!r} is not on this machine, so its nodes would read "
            "and write where this machine's files are out of their reach: " + "; ".join(problems),
            details={"address": address},
        )
