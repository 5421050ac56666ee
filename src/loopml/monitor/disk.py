"""The free space of the disks the platform writes to, and the writes refused for lack of
it, on the platform's ``/metrics``:

| metric | labels |
|---|---|
| ``loopml_disk_free_bytes`` | path (``home``, ``artifacts``, ``database``): free, per scrape |
| ``loopml_disk_size_bytes`` | path: the filesystem's size |
| ``loopml_disk_full_refusals_total`` | store: writes refused because the disk was full |

The stores: ``lake``, ``database``, ``artifacts``, ``spool`` (uploads), ``prediction_log``
and ``log`` (the server's log file).

``home`` is always watched; the artifact root (lake tables, models, uploads) and a SQLite
database get a path of their own when they lie on another filesystem than the home
(``watched``), so an operator who put them on a disk of their own sees that disk fill.

A request refused with ``DiskFullError`` counts once under the store that refused it; the
prediction log counts the rows it dropped, the server's log file the records it dropped.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loopml.core.logs import PrivateRotatingFileHandler


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

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self._paths = dict(paths)
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
