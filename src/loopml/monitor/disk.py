"""The free space of the disks the platform writes to, and the writes refused for lack of
it, on the platform's ``/metrics``:

| metric | labels |
|---|---|
| ``loopml_disk_free_bytes`` | path (``home``, ``artifacts``, ``database``): free, per scrape |
| ``loopml_disk_size_bytes`` | path: the filesystem's size |
| ``loopml_disk_full_refusals_total`` | store: writes refused because the disk was full |
| ``loopml_disk_reserve_bytes`` | path (``home``): the space the reserve holds now |

The stores: ``lake``, ``database``, ``artifacts``, ``spool`` (uploads), ``prediction_log``
and ``log`` (the server's log file).

``home`` is always watched; the artifact root (lake tables, models, uploads) and a SQLite
database get a path of their own when they lie on another filesystem than the home
(``watched``), so an operator who put them on a disk of their own sees that disk fill.

A request refused with ``DiskFullError`` counts once under the store that refused it; the
prediction log counts the rows it dropped, the server's log file the records it dropped.

``DiskReserve`` keeps a few allocated megabytes in the home for the operations that free
space (a table delete, a vacuum, a gc), which also write: see docs/operations.md, Disk space.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loopml.system.logfiles import PrivateRotatingFileHandler

log = logging.getLogger("loopml.monitor")


def watched(home: Path, artifact_uri: str, database_url: str) -> dict[str, Path]:
    """The folders whose disks ``/metrics`` reports: the home, and the local artifact root
    and the SQLite database's folder where each lies on a filesystem of its own (an S3
    root or a PostgreSQL database is not this machine's disk)."""
    paths = {"home": home}
    devices = {_device(home)}
    candidates = []
    if artifact_uri.startswith("file://"):
        candidates.append(("artifacts", Path(unquote(urlsplit(artifact_uri).path))))
    if database_url.startswith("sqlite:///"):
        file = database_url.removeprefix("sqlite:///").split("?", 1)[0]
        if file and file != ":memory:":
            candidates.append(("database", Path(file).parent))
    for label, path in candidates:
        device = _device(path)
        if device is not None and device not in devices:
            paths[label] = path
            devices.add(device)
    return paths


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


class DiskSpace(Collector):
    """The disk gauges and the refusals counter, for a ``CollectorRegistry``.

    Args:
        paths: label → a folder on the disk to watch (``watched(...)``).
    """

    def __init__(self, paths: Mapping[str, Path], reserve: DiskReserve | None = None) -> None:
        self._paths = dict(paths)
        self._reserve = reserve
        self._refused: dict[str, int] = {}
        self._lock = threading.Lock()

    def refused(self, store: str, count: int = 1) -> None:
        """Count ``count`` writes ``store`` refused for lack of space."""
        with self._lock:
            self._refused[store] = self._refused.get(store, 0) + count

    def refusals(self) -> dict[str, int]:
        """The refusals so far per store, the server log's dropped records included."""
        with self._lock:
            counts = dict(self._refused)
        dropped = PrivateRotatingFileHandler.dropped_for_space
        if dropped:
            counts["log"] = counts.get("log", 0) + dropped
        return counts

    def collect(self) -> Iterator[Metric]:
        free = GaugeMetricFamily(
            "loopml_disk_free_bytes", "Bytes free to the server on the disk.", labels=("path",)
        )
        size = GaugeMetricFamily(
            "loopml_disk_size_bytes", "Size of the disk's filesystem.", labels=("path",)
        )
        for label, path in self._paths.items():
            try:
                st = os.statvfs(path)
            except OSError:
                continue  # gone or unreadable: no sample rather than a wrong one
            free.add_metric((label,), float(st.f_bavail * st.f_frsize))
            size.add_metric((label,), float(st.f_blocks * st.f_frsize))
        refused = CounterMetricFamily(
            "loopml_disk_full_refusals",
            "Writes refused because the disk holding them was full.",
            labels=("store",),
        )
        for store, count in sorted(self.refusals().items()):
            refused.add_metric((store,), float(count))
        yield from (free, size, refused)
        if self._reserve is not None:
            reserve = GaugeMetricFamily(
                "loopml_disk_reserve_bytes",
                "Space the reserve file holds for freeing space on a full disk.",
                labels=("path",),
            )
            reserve.add_metric(("home",), float(self._reserve.held()))
            yield reserve


def _free(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class DiskReserve:
    """A file of ``size`` bytes with its blocks allocated, released when an operation that
    frees space starts on a disk with less than ``size`` free, so that what it writes first
    (a metadata row, an event, a Delta log entry) fits; made again when the disk has room
    for twice ``size``, so that making it never fills the disk itself.

    Args:
        path: the file (``home/disk.reserve``).
        size: bytes to hold; 0 holds none.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size
        self._lock = threading.Lock()
        self._freeing = 0

    def held(self) -> int:
        """The bytes the reserve holds now (0 while released)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def make(self) -> bool:
        """Allocate the reserve where it is missing and the disk has room; whether it is held
        now. Never while an operation that frees space runs; one of another size (the setting
        changed) is replaced, and removed where the size is 0."""
        with self._lock:
            held = self.held()
            if held == self.size:
                return held > 0
            if self._freeing:
                return False
            if self.size <= 0:
                self.path.unlink(missing_ok=True)
                return False
            free = _free(self.path.parent)
            if free is None or free + held < 2 * self.size:
                return False
            self.path.unlink(missing_ok=True)
            return self._allocate()

    def _allocate(self) -> bool:
        part = self.path.with_name(self.path.name + ".part")
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
            os.replace(part, self.path)
        except OSError as exc:
            part.unlink(missing_ok=True)
            log.warning("the disk reserve %s was not made: %s", self.path, exc)
            return False
        return True

    @contextmanager
    def freeing(self, what: str) -> Iterator[None]:
        """Around an operation that frees space (``what``: "a table delete"): the reserve is
        released first when the disk has less than its size free, and made again after."""
        with self._lock:
            self._freeing += 1
            free = _free(self.path.parent)
            held = self.held()
            if held and free is not None and free < self.size:
                self.path.unlink(missing_ok=True)
                log.warning(
                    "the disk holding %s is full: its reserve (%d bytes) was released for %s; "
                    "it is made again once the disk has room for twice that",
                    self.path.parent,
                    held,
                    what,
                )
        try:
            yield
        finally:
            with self._lock:
                self._freeing -= 1
            self.make()
