"""The hosts of ``topology.py``: Linux network, PID and mount namespaces on a private bridge.

``Topology`` is a running topology's record (names, addresses, folder, the processes it
started; saved as JSON in its folder, so ``status`` and ``down`` find it again); the network
(a bridge, a veth pair a host), each host's first process (pid 1 of its PID namespace, that
the host's later processes join) and killing a host's every process are here; which
services run on which host is ``topology.py``'s. Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
INITDB = Path("/usr/lib/postgresql/15/bin/initdb")
HOSTS = {"db": 2, "p1": 3, "p2": 4, "w1": 5, "w2": 6}
RAY_PORT = 6379
PG_PORT = 5432
S3_PORT = 5000
API_PORT = 8765
BUCKET = "loopml"
START_TIMEOUT_S = 120.0
STATE = "topology.json"


class TopologyError(RuntimeError):
    """The topology cannot be built here (not root, no ``ip netns``) or did not start."""


@dataclass
class Topology:
    """A running topology: its names, addresses, folder and the processes it started."""

    prefix: str
    subnet: int
    folder: str
    pids: dict[str, list[int]] = field(default_factory=dict)
    inits: dict[str, int] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    lease_s: float = 3.0
    ray_token: str = field(default_factory=lambda: secrets.token_hex(32))

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def ip(self, host: str) -> str:
        return f"10.77.{self.subnet}.{HOSTS[host]}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@{self.ip('db')}:{PG_PORT}/loopml"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.ip('db')}:{S3_PORT}"

    @property
    def ray_address(self) -> str:
        return f"{self.ip('p1')}:{RAY_PORT}"

    def url(self, host: str) -> str:
        return f"http://{self.ip(host)}:{API_PORT}"

    def artifact_settings(self) -> dict[str, str]:
        """The ``artifacts`` settings section every host shares."""
        return {
            "root": f"s3://{BUCKET}/loopml",
            "s3_endpoint_url": self.s3_endpoint,
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
        }

    def env(self, home: Path | None = None) -> dict[str, str]:
        """What every loopml process of the topology (and a client on this machine) is
        given: the shared database and artifact root, the code folder on the path."""
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "RAY_"))}
        path = [str(self.path / "code"), str(SOURCE), os.environ.get("PYTHONPATH", "")]
        return keep | {
            "PYTHONPATH": os.pathsep.join(p for p in path if p),
            "LOOPML_HOME": str(home or self.path / "client-home"),
            "LOOPML_DATABASE_URL": self.database_url,
            **{f"LOOPML_ARTIFACTS_{k.upper()}": v for k, v in self.artifact_settings().items()},
            "LOOPML_AUTH_ENABLED": "true",
            "OMP_NUM_THREADS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Token auth with a token of the topology's own, whatever ~/.ray/auth_token holds.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.ray_token,
            "NO_PROXY": "*",
        }

    def start(
        self, host: str, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` on ``host`` (in its namespaces), its output in ``logs/NAME.log``."""
        (self.path / "logs").mkdir(exist_ok=True)
        enter = ["nsenter", "-t", str(self.inits[host]), "-n", "-p", "-m"]
        # A temporary folder per host, as separate machines have: the local executor names
        # its attempt folders by pid, and pids repeat across the hosts' PID namespaces.
        tmp = self.path / f"tmp-{host}"
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o1777)
        with (self.path / "logs" / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [*enter, *command],
                env=(env or self.env()) | {"TMPDIR": str(tmp)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pids.setdefault(host, []).append(process.pid)
        _STARTED[process.pid] = process
        self.save()
        return process

    def host_pids(self, host: str) -> list[int]:
        """Every process in ``host``'s namespace now."""
        found = run(["ip", "netns", "pids", self.ns(host)], check=False).stdout.split()
        return [int(p) for p in found]

    def kill_host(self, host: str) -> list[int]:
        """SIGKILL every process of ``host`` at once, as a machine that dies; returns them."""
        killed: set[int] = set()
        deadline = time.monotonic() + 10
        # Until none is left: a process may fork while the others are killed.
        while pids := set(self.host_pids(host)) | (set(self.pids.get(host, [])) - killed):
            if time.monotonic() > deadline:
                raise TopologyError(f"{host}'s processes {sorted(pids)} outlived SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= pids
            for pid in self.pids.get(host, []):
                _reap(pid)
            time.sleep(0.05)
        return sorted(killed)

    def logs(self, name: str, tail: int = 3000) -> str:
        path = self.path / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def save(self) -> None:
        (self.path / STATE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: Path) -> Topology:
        return cls(**json.loads((folder / STATE).read_text()))


def run(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise TopologyError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done


_STARTED: dict[int, subprocess.Popen[bytes]] = {}
"""The processes this Python process started, reaped when killed."""


def _reap(pid: int) -> None:
    process = _STARTED.pop(pid, None)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


def why_not_here() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``), or ``None``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the multi-host topology needs root (ip netns, a bridge): run it as root"
    if shutil.which("ip") is None:
        return "the multi-host topology needs iproute2's `ip` command"
    if not INITDB.is_file():
        return f"the multi-host topology needs PostgreSQL 15 ({INITDB} is missing)"
    probe = f"lmprobe{secrets.token_hex(3)}"
    made = run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip()}"
    run(["ip", "netns", "del", probe], check=False)
    return None


def free_subnet() -> int:
    used = run(["ip", "-4", "addr"]).stdout + run(["ip", "-4", "route"]).stdout
    for _ in range(100):
        subnet = secrets.randbelow(250) + 2
        if f"10.77.{subnet}." not in used:
            return subnet
    raise TopologyError("no free 10.77.N.0/24 subnet for the topology's bridge")


def wait_port(address: str, port: int, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((address, port)) == 0:
                return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise TopologyError(f"{what} did not open {address}:{port}")


def wait_text(topo: Topology, log: str, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while text not in topo.logs(log, tail=1_000_000):
        if process.poll() is not None or time.monotonic() > deadline:
            raise TopologyError(f"{log} did not start: {topo.logs(log)}")
        time.sleep(0.2)


def make_network(topo: Topology) -> None:
    run(["ip", "link", "add", topo.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"10.77.{topo.subnet}.1/24", "dev", topo.bridge])
    run(["ip", "link", "set", topo.bridge, "up"])
    for host in HOSTS:
        ns = topo.ns(host)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", ns, "master", topo.bridge, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{topo.ip(host)}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _boot(topo, host)


def _boot(topo: Topology, host: str) -> None:
    """The host's first process, pid 1 of a PID namespace of its own (with its own /proc),
    that every later process of the host joins: on one machine, a host must not see the
    others' processes (Ray's driver picks its node among the raylets it sees, the head first,
    and on a shared process table it would pick another host's)."""
    unshare = subprocess.Popen(
        [
            *("ip", "netns", "exec", topo.ns(host)),
            *("unshare", "--pid", "--fork", "--mount-proc", "sleep", "infinity"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    topo.pids.setdefault(host, []).append(unshare.pid)
    _STARTED[unshare.pid] = unshare
    deadline = time.monotonic() + 10
    while not (children := _children(unshare.pid)):
        if time.monotonic() > deadline or unshare.poll() is not None:
            raise TopologyError(f"unshare did not start {host}'s first process")
        time.sleep(0.02)
    topo.inits[host] = children[0]
    topo.save()


def _children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in found.read_text().split()] if found.exists() else []
