"""Measures replica processes with psutil: CPU since the previous reading, resident memory
and established TCP connections, each of the process and its children together.

CPU is the change of the processes' CPU time over the wall time between two readings of
the same pid (the first reading of a pid averages over its life so far), so a reading every
monitor round says how busy the replica was during that round, not at one instant.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psutil

from loopml.core.resources import ReplicaSample
from loopml.deploy.targets._process import Replica


@dataclass(frozen=True)
class Reading:
    """One process tree's figures."""

    cpu_percent: float
    rss_bytes: int
    connections: int
    uptime_s: float


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        children = root.children(recursive=True)
    return [root, *children]


def _connections(process: psutil.Process) -> int:
    # psutil 6 renamed connections() to net_connections().
    read = getattr(process, "net_connections", None) or process.connections
    with contextlib.suppress(psutil.Error):
        return sum(1 for c in read(kind="tcp") if c.status == psutil.CONN_ESTABLISHED)
    return 0


class ProcessMeter:
    """Reads process trees by pid, remembering each pid's last CPU time for the next."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, monotonic)

    def read(self, pid: int) -> Reading | None:
        """The tree's figures now, or ``None`` when the process is gone."""
        try:
            processes = _tree(pid)
            root = processes[0]
            created = root.create_time()
            cpu = rss = 0.0
            connections = 0
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    cpu += times.user + times.system
                    rss += process.memory_info().rss
                    connections += _connections(process)
        except psutil.Error:
            self._last.pop(pid, None)
            return None
        now = time.monotonic()
        uptime = max(time.time() - created, 1e-3)
        previous = self._last.get(pid)
        if previous is None:
            percent = 100.0 * cpu / uptime
        else:
            spent, at = previous
            percent = 100.0 * max(cpu - spent, 0.0) / max(now - at, 1e-3)
        self._last[pid] = (cpu, now)
        return Reading(round(percent, 2), int(rss), connections, round(uptime, 3))

    def keep(self, pids: set[int]) -> None:
        """Forget every pid not in ``pids`` (ended processes; a pid may be reused)."""
        for pid in set(self._last) - pids:
            del self._last[pid]

    def sample(self, key: tuple[str, str], replica: Replica, pid: int) -> ReplicaSample | None:
        """Replica ``replica`` of deployment ``key`` (project, name) measured now, or
        ``None`` when its process ``pid`` is gone."""
        reading = self.read(pid)
        if reading is None:
            return None
        package = replica.package
        return ReplicaSample(
            project=key[0],
            deployment=key[1],
            model=package.model,
            version=package.version,
            revision=package.revision,
            replica=replica.index,
            pid=pid,
            state=str(replica.state),
            cpu_percent=reading.cpu_percent,
            rss_bytes=reading.rss_bytes,
            connections=reading.connections,
            restarts=replica.restarts,
            uptime_s=reading.uptime_s,
        )
