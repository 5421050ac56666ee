"""loopml on several hosts, on one machine: Linux network namespaces on a private bridge.

    sudo python scripts/topology.py up        # prints the hosts, addresses and folder
    sudo python scripts/topology.py status
    sudo python scripts/topology.py down --folder FOLDER    # or --all

Hosts ``db`` (PostgreSQL, moto's S3), ``p1``/``p2`` (``loopml up``; ``p1`` is also the Ray
head) and ``w1``/``w2`` (a Ray node and ``loopml worker --executor ray``), each in network,
PID and mount namespaces of its own, names prefixed per run. ``down`` SIGKILLs every process
in each namespace (``ip netns pids``; never another Ray or PostgreSQL of this machine) and
deletes the namespaces and the bridge. Needs root. See docs/operations.md, "Scaling out".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
PYTHON = sys.executable
INITDB = Path("/usr/lib/postgresql/15/bin/initdb")
POSTGRES = INITDB.parent / "postgres"
HOSTS = {"db": 2, "p1": 3, "p2": 4, "w1": 5, "w2": 6}
RAY_PORT = 6379
PG_PORT = 5432
S3_PORT = 5000
API_PORT = 8765
BUCKET = "loopml"
ADMIN = "ada"
ADMIN_PASSWORD = "multi-host-admin-pw"  # noqa: S105 (a throwaway test cluster's)
START_TIMEOUT_S = 120.0
_STATE = "topology.json"
TMP = "/tmp"  # noqa: S108 (a folder of its own is made below it, 0755, root's)
_OBJECT_STORE_BYTES = "80000000"


class TopologyError(RuntimeError):
    """The topology cannot be built here (not root, no ``ip netns``) or did not start."""


@contextlib.contextmanager
def _timed(parts: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    parts[name] = round(time.monotonic() - start, 1)


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
        found = _run(["ip", "netns", "pids", self.ns(host)], check=False).stdout.split()
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
        (self.path / _STATE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: Path) -> Topology:
        return cls(**json.loads((folder / _STATE).read_text()))


def _run(command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
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
    made = _run(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not allowed here: {made.stderr.strip()}"
    _run(["ip", "netns", "del", probe], check=False)
    return None


def _free_subnet() -> int:
    used = _run(["ip", "-4", "addr"]).stdout + _run(["ip", "-4", "route"]).stdout
    for _ in range(100):
        subnet = secrets.randbelow(250) + 2
        if f"10.77.{subnet}." not in used:
            return subnet
    raise TopologyError("no free 10.77.N.0/24 subnet for the topology's bridge")


def _wait_port(address: str, port: int, what: str, process: subprocess.Popen[bytes]) -> None:
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


def _wait_text(topo: Topology, log: str, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while text not in topo.logs(log, tail=1_000_000):
        if process.poll() is not None or time.monotonic() > deadline:
            raise TopologyError(f"{log} did not start: {topo.logs(log)}")
        time.sleep(0.2)


def _network(topo: Topology) -> None:
    _run(["ip", "link", "add", topo.bridge, "type", "bridge"])
    _run(["ip", "addr", "add", f"10.77.{topo.subnet}.1/24", "dev", topo.bridge])
    _run(["ip", "link", "set", topo.bridge, "up"])
    for host in HOSTS:
        ns = topo.ns(host)
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns])
        _run(["ip", "link", "set", ns, "master", topo.bridge, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{topo.ip(host)}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
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


def _database(topo: Topology) -> None:
    data = topo.path / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    _run([*as_postgres, str(INITDB), "-D", str(data), "-A", "trust", "-U", "postgres"])
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all 10.77.{topo.subnet}.0/24 trust\n")
    server = f"{POSTGRES} -D {data} -k {data} -h {topo.ip('db')} -p {PG_PORT}"
    settings = "-c fsync=off -c max_connections=200"
    postgres = topo.start("db", "postgres", [*as_postgres, *server.split(), *settings.split()])
    moto = topo.start(
        "db", "moto", [PYTHON, "-m", "moto.server", "-H", topo.ip("db"), "-p", str(S3_PORT)]
    )
    _wait_port(topo.ip("db"), PG_PORT, "PostgreSQL", postgres)
    createdb = [
        *as_postgres,
        str(INITDB.parent / "createdb"),
        *("-h", topo.ip("db"), "-p", str(PG_PORT), "-U", "postgres", "loopml"),
    ]
    # PostgreSQL listens before it accepts: connections made in between are refused with
    # "the database system is starting up" (seen on a busy machine).
    deadline = time.monotonic() + START_TIMEOUT_S
    while "starting up" in (made := _run(createdb, check=False)).stderr:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if made.returncode != 0:
        raise TopologyError(f"createdb failed: {made.stderr.strip()}")
    _wait_port(topo.ip("db"), S3_PORT, "moto's S3 server", moto)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=topo.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto's)
    ).create_bucket(Bucket=BUCKET)


def _ray_node(topo: Topology, host: str, head: bool) -> subprocess.Popen[bytes]:
    ray = str(Path(PYTHON).parent / "ray")
    common = (
        f"--block --node-ip-address={topo.ip(host)} --disable-usage-stats "
        f"--object-store-memory={_OBJECT_STORE_BYTES}"
    ).split()
    if head:  # no CPUs on the head: every step runs on a worker host
        where = (
            f"--head --port={RAY_PORT} --num-cpus=0 --include-dashboard=false "
            f"--temp-dir={topo.path / 'ray'}"
        ).split()
    else:
        where = [f"--address={topo.ray_address}", "--num-cpus=1"]
    return topo.start(host, f"ray-{host}", [ray, "start", *common, *where])


def _platform(topo: Topology, host: str) -> subprocess.Popen[bytes]:
    home = topo.path / f"home-{host}"
    secret = home / "secrets"
    secret.mkdir(parents=True)
    # Every replica keys token hashes with the same install secret.
    shutil.copy(topo.path / "install.key", secret / "install.key")
    (secret / "install.key").chmod(0o600)
    env = topo.env(home) | {
        "LOOPML_SERVER_HOST": topo.ip(host),
        "LOOPML_SERVER_WORKER": "false",
        "LOOPML_SERVER_ALLOWED_HOSTS": json.dumps([topo.ip("p1"), topo.ip("p2")]),
        "LOOPML_SERVER_MAINTENANCE_INTERVAL_S": "1",
        # A round a second (the lease stays its 30 s minimum), reading up to 3 s ago: the
        # prediction log's posts (0.2 s batches) land well within that.
        "LOOPML_MONITOR_INTERVAL_S": "1",
        "LOOPML_MONITOR_LAG_S": "3",
    }
    return topo.start(host, f"loopml-{host}", [PYTHON, "-m", "loopml.cli.main", "up"], env)


def _worker(topo: Topology, host: str) -> subprocess.Popen[bytes]:
    options = (
        f"--executor ray --ray-address {topo.ray_address} --id worker-{host} --concurrency 1 "
        f"--lease {topo.lease_s} --heartbeat {topo.lease_s / 5} --poll 0.2 --sweep 0.5"
    )
    command = [PYTHON, "-m", "loopml.cli.main", "worker", *options.split()]
    return topo.start(host, f"worker-{host}", command, topo.env(topo.path / f"home-{host}"))


def _cli(topo: Topology, *args: str, input: str | None = None) -> None:
    command = [PYTHON, "-m", "loopml.cli.main", *args]
    done = subprocess.run(command, env=topo.env(), input=input, capture_output=True, text=True)
    if done.returncode != 0:
        raise TopologyError(f"loopml {' '.join(args)} failed: {done.stdout}{done.stderr}")


def _schema_and_admin(topo: Topology) -> None:
    """The schema (before two servers start on the empty database), the platform admin and
    the install secret every replica shares."""
    (topo.path / "client-home").mkdir()
    key = topo.path / "install.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    _cli(topo, "db", "upgrade")
    _cli(topo, "users", "create-admin", ADMIN, "--password-stdin", input=f"{ADMIN_PASSWORD}\n")


def up(folder: Path | None = None, lease_s: float = 3.0) -> Topology:
    """Build the network, start every host's processes and wait until each answers.

    Raises:
        TopologyError: not possible here (the message says why) or a host did not start;
            whatever was made is removed first.
    """
    reason = why_not_here()
    if reason:
        raise TopologyError(reason)
    prefix = f"lm{secrets.token_hex(3)}"
    # Under /tmp whatever TMPDIR says: Ray's socket paths below it must stay short.
    path = folder or Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=TMP))
    path.chmod(0o755)  # postgres (another user) reaches its data folder below
    (path / "code").mkdir(exist_ok=True)
    topo = Topology(prefix=prefix, subnet=_free_subnet(), folder=str(path), lease_s=lease_s)
    topo.save()
    timing: dict[str, float] = {}
    try:
        with _timed(timing, "network"):
            _network(topo)
        with _timed(timing, "db"):
            _database(topo)
            _schema_and_admin(topo)
        # The platforms start while the Ray nodes do (they need only the database); p2 once
        # p1 serves, so that p1's monitor takes the database's monitor lease first and holds
        # it (a test that kills p1 sees p2 take it over).
        servers = {"p1": _platform(topo, "p1")}
        with _timed(timing, "ray"):
            nodes = {"p1": _ray_node(topo, "p1", head=True)}
            _wait_text(topo, "ray-p1", "Ray runtime started", nodes["p1"])
            _wait_port(topo.ip("p1"), API_PORT, "loopml up on p1", servers["p1"])
            servers["p2"] = _platform(topo, "p2")
            for host in ("w1", "w2"):  # one at a time: two at once time out on 2 cores
                nodes[host] = _ray_node(topo, host, head=False)
                _wait_text(topo, f"ray-{host}", "Ray runtime started", nodes[host])
        with _timed(timing, "workers and platforms"):
            workers = {host: _worker(topo, host) for host in ("w1", "w2")}
            for host, server in servers.items():
                _wait_port(topo.ip(host), API_PORT, f"loopml up on {host}", server)
            for host, worker in workers.items():
                _wait_text(topo, f"worker-{host}", "pipeline worker", worker)
    except BaseException as exc:
        logs = "\n".join(
            f"--- {log.name}:\n{log.read_text(errors='replace')[-1500:]}"
            for log in sorted((path / "logs").glob("*.log"))
        )
        down(topo)
        if isinstance(exc, TopologyError):
            raise TopologyError(f"{exc}\n{logs}") from exc
        raise
    topo.timing = timing
    topo.save()
    return topo


def down(topo: Topology, keep_folder: bool = False) -> None:
    """Kill every process of every host, delete the namespaces, links and folder."""
    for host in reversed(HOSTS):
        with contextlib.suppress(TopologyError):  # the namespaces go all the same
            topo.kill_host(host)
    for host in HOSTS:
        _run(["ip", "netns", "del", topo.ns(host)], check=False)
        _run(["ip", "link", "del", topo.ns(host)], check=False)
    _run(["ip", "link", "del", topo.bridge], check=False)
    if not keep_folder:
        shutil.rmtree(topo.folder, ignore_errors=True)


def status(topo: Topology) -> str:
    lines = [f"topology {topo.prefix} in {topo.folder} (bridge {topo.bridge})"]
    for host in HOSTS:
        lines.append(f"  {host:3} {topo.ip(host):15} {len(topo.host_pids(host))} processes")
    lines.append(f"  database {topo.database_url}; S3 {topo.s3_endpoint}; Ray {topo.ray_address}")
    lines.append(f"  platforms {topo.url('p1')} {topo.url('p2')} (admin {ADMIN})")
    return "\n".join(lines)


def _found(folder: str | None) -> list[Topology]:
    if folder:
        return [Topology.load(Path(folder))]
    return [Topology.load(state.parent) for state in Path(TMP).glob(f"lm*-*/{_STATE}")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--folder", help="the topology's folder (status: default all)")
    parser.add_argument("--all", action="store_true", help="down: every topology in /tmp")
    args = parser.parse_args(argv)
    if args.action == "down" and not (args.folder or args.all):
        parser.error("down needs --folder FOLDER or --all")
    if args.action == "up":
        try:
            topo = up(Path(args.folder) if args.folder else None)
        except TopologyError as exc:
            print(f"topology: {exc}", file=sys.stderr)
            return 2
        print(status(topo))
        print(f"started in {topo.timing} s; down: python {sys.argv[0]} down --folder {topo.folder}")
        return 0
    for topo in _found(args.folder):
        print(status(topo))
        if args.action == "down":
            down(topo)
            print(f"topology {topo.prefix} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
