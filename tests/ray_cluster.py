"""A real Ray cluster on this machine for the Ray executor's tests: a head node started with
``ray start --head --block`` in a temporary folder of its own, and extra nodes on demand.

Every process is ours and ended by its pid (never ``ray stop``, which ends every Ray process
of the user on the machine, other test sessions' included). The pytest-xdist workers of one
run share one cluster (``shared_cluster``): the first to need it starts it, the last to
finish stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil

import loopml
from tests.waiting import eventually

RAY = Path(sys.executable).parent / "ray"
START_TIMEOUT_S = 120.0
_STARTED = "Ray runtime started"
KILL_SLOT = "node_kill_slot"
"""A custom resource (one on the head) that only the node-killing test's tasks ask for, so
that no other test's task runs on the node it kills."""
# Small object stores: the tasks pass a task file, log chunks and outcomes, nothing big.
# (A bench that moves row groups asks for more: with 80 MB, 5M scored rows spilled to disk.)
OBJECT_STORE_BYTES = 80_000_000


def _env() -> dict[str, str]:
    # The Ray workers import this checkout's loopml, as the test process does.
    source = str(Path(loopml.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")


def _wait_started(process: subprocess.Popen[bytes], out: Path) -> None:
    try:
        eventually(
            lambda: _STARTED in out.read_text(errors="replace") or process.poll() is not None,
            START_TIMEOUT_S,
            "ray start to say it started",
            interval_s=0.1,
            describe=lambda: out.read_text(errors="replace")[-3000:],
        )
        if _STARTED not in out.read_text(errors="replace"):
            raise RuntimeError(f"ray start failed: {out.read_text(errors='replace')[-3000:]}")
    except BaseException:
        kill_tree(process.pid)
        process.wait(10)
        raise


def _popen(command: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (a node: raylet, agents, Ray workers,
    the step processes they started), all at once, as a machine that dies does."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


@dataclass
class RayCluster:
    """A running cluster: its head's address and the ``ray start`` processes of its nodes."""

    address: str
    folder: Path
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    object_store_bytes: int = OBJECT_STORE_BYTES

    @classmethod
    def start(cls, port: int, object_store_bytes: int = OBJECT_STORE_BYTES) -> RayCluster:
        folder = Path(tempfile.mkdtemp(prefix="lr-", dir="/tmp"))  # Ray's socket paths are short
        out = folder / "head.out"
        with out.open("wb") as log:
            head = _popen(
                [
                    str(RAY),
                    "start",
                    "--head",
                    "--block",
                    f"--port={port}",
                    "--num-cpus=1",
                    f"--resources={json.dumps({KILL_SLOT: 1})}",
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    f"--temp-dir={folder}",
                    f"--object-store-memory={object_store_bytes}",
                ],
                log,
            )
        cluster = cls(
            address=f"127.0.0.1:{port}",
            folder=folder,
            nodes=[head],
            object_store_bytes=object_store_bytes,
        )
        _wait_started(head, out)
        return cluster

    def add_node(
        self, name: str, num_cpus: int = 1, resources: dict[str, float] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start another node (``ray start --address``); returns its ``ray start`` process."""
        out = self.folder / f"{name}.out"
        with out.open("wb") as log:
            node = _popen(
                [
                    str(RAY),
                    "start",
                    "--block",
                    f"--address={self.address}",
                    f"--num-cpus={num_cpus}",
                    f"--resources={json.dumps(resources or {})}",
                    "--disable-usage-stats",
                    f"--object-store-memory={self.object_store_bytes}",
                ],
                log,
            )
        self.nodes.append(node)
        _wait_started(node, out)
        return node

    def kill_node(self, node: subprocess.Popen[bytes]) -> None:
        """SIGKILL every process of a node this object started, and reap its ``ray start``."""
        kill_tree(node.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(10)

    def stop(self) -> None:
        """End every node's processes, newest node first, and remove the folder."""
        for node in reversed(self.nodes):
            kill_tree(node.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


_OURS: list[RayCluster] = []
"""The cluster this process started, kept (its ``ray start`` process is a child of this one)
until whichever process is the last to use it ends it."""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared_cluster(folder: Path, port: int) -> Iterator[RayCluster]:
    """The cluster the test processes sharing ``folder`` use, started by the first of them
    and stopped by the last (its state in ``folder/ray-cluster.json``, under a file lock)."""
    state_file = folder / "ray-cluster.json"
    with _locked(folder / "ray-cluster.lock"):
        if state_file.is_file():
            state = json.loads(state_file.read_text())
        else:
            started = RayCluster.start(port)
            _OURS.append(started)
            state = {"address": started.address, "folder": str(started.folder), "users": 0}
            state["pid"] = started.nodes[0].pid
        state["users"] += 1
        state_file.write_text(json.dumps(state))
    try:
        yield RayCluster(address=state["address"], folder=Path(state["folder"]))
    finally:
        with _locked(folder / "ray-cluster.lock"):
            state = json.loads(state_file.read_text())
            state["users"] -= 1
            if state["users"] > 0:
                state_file.write_text(json.dumps(state))
            else:
                kill_tree(state["pid"])
                for ours in _OURS:
                    ours.stop()  # reaps its `ray start` processes
                shutil.rmtree(state["folder"], ignore_errors=True)
                state_file.unlink()
