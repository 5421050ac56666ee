"""The Ray cluster the platform joins: the worker's Ray executor (``pipelines.backends.ray``),
AutoML trials on Ray (``train.automl._ray``) and batch scoring on Ray
(``scoring.ray_batch``) import Ray, connect and check the cluster's reach the same way,
named by the same settings."""

from __future__ import annotations

import signal
import socket
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from loopml.core.errors import ConfigurationError

if TYPE_CHECKING:
    from loopml.settings import Settings

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
