"""loopml on several hosts, on one machine: Linux network namespaces on a private bridge.

    sudo python scripts/topology.py up        # prints the hosts, addresses and folder
    sudo python scripts/topology.py status
    sudo python scripts/topology.py down --folder FOLDER    # or --all

Hosts ``db`` (PostgreSQL, moto's S3), ``p1``/``p2`` (``loopml up``; ``p1`` is also the Ray
head) and ``w1``/``w2`` (a Ray node and ``loopml worker --executor ray``), each in network,
PID and mount namespaces of its own, names prefixed per run. ``down`` SIGKILLs every process
in each namespace (``ip netns pids``; never another Ray or PostgreSQL of this machine) and
deletes the namespaces and the bridge. Needs root. See docs/operations.md, "Scaling out".
Which services run on which host is here; the namespaces, the network and the record of a
running topology are ``_hosts.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Run as a script (scripts/ first on the path), the repository root is needed for the
# package import below.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts._hosts import (
    API_PORT,
    BUCKET,
    HOSTS,
    INITDB,
    PG_PORT,
    RAY_PORT,
    S3_PORT,
    START_TIMEOUT_S,
    STATE,
    Topology,
    TopologyError,
    free_subnet,
    make_network,
    run,
    wait_port,
    wait_text,
    why_not_here,
)

__all__ = ["ADMIN", "ADMIN_PASSWORD", "Topology", "TopologyError", "down", "up", "why_not_here"]

PYTHON = sys.executable
POSTGRES = INITDB.parent / "postgres"
ADMIN = "ada"
ADMIN_PASSWORD = "multi-host-admin-pw"  # noqa: S105 (a throwaway test cluster's)
TMP = "/tmp"  # noqa: S108 (a folder of its own is made below it, 0755, root's)
# Scored row groups of batch scoring (about 40 MB each, two queued per actor) fit without
# spilling to disk.
_OBJECT_STORE_BYTES = "200000000"


@contextlib.contextmanager
def _timed(parts: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    parts[name] = round(time.monotonic() - start, 1)


def _database(topo: Topology) -> None:
    data = topo.path / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    run([*as_postgres, str(INITDB), "-D", str(data), "-A", "trust", "-U", "postgres"])
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all 10.77.{topo.subnet}.0/24 trust\n")
    server = f"{POSTGRES} -D {data} -k {data} -h {topo.ip('db')} -p {PG_PORT}"
    settings = "-c fsync=off -c max_connections=200"
    postgres = topo.start("db", "postgres", [*as_postgres, *server.split(), *settings.split()])
    moto = topo.start(
        "db", "moto", [PYTHON, "-m", "moto.server", "-H", topo.ip("db"), "-p", str(S3_PORT)]
    )
    wait_port(topo.ip("db"), PG_PORT, "PostgreSQL", postgres)
    createdb = [
        *as_postgres,
        str(INITDB.parent / "createdb"),
        *("-h", topo.ip("db"), "-p", str(PG_PORT), "-U", "postgres", "loopml"),
    ]
    # PostgreSQL listens before it accepts: connections made in between are refused with
    # "the database system is starting up" (seen on a busy machine).
    deadline = time.monotonic() + START_TIMEOUT_S
    while "starting up" in (made := run(createdb, check=False)).stderr:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if made.returncode != 0:
        raise TopologyError(f"createdb failed: {made.stderr.strip()}")
    wait_port(topo.ip("db"), S3_PORT, "moto's S3 server", moto)
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
        # No worker runs in the platform: this is the cluster `predict --on ray` scores on.
        "LOOPML_WORKER_EXECUTOR": json.dumps({"type": "ray", "address": topo.ray_address}),
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
    topo = Topology(prefix=prefix, subnet=free_subnet(), folder=str(path), lease_s=lease_s)
    topo.save()
    timing: dict[str, float] = {}
    try:
        with _timed(timing, "network"):
            make_network(topo)
        with _timed(timing, "db"):
            _database(topo)
            _schema_and_admin(topo)
        # The platforms start while the Ray nodes do (they need only the database); p2 once
        # p1 serves, so that p1's monitor takes the database's monitor lease first and holds
        # it (a test that kills p1 sees p2 take it over).
        servers = {"p1": _platform(topo, "p1")}
        with _timed(timing, "ray"):
            nodes = {"p1": _ray_node(topo, "p1", head=True)}
            wait_text(topo, "ray-p1", "Ray runtime started", nodes["p1"])
            wait_port(topo.ip("p1"), API_PORT, "loopml up on p1", servers["p1"])
            servers["p2"] = _platform(topo, "p2")
            for host in ("w1", "w2"):  # one at a time: two at once time out on 2 cores
                nodes[host] = _ray_node(topo, host, head=False)
                wait_text(topo, f"ray-{host}", "Ray runtime started", nodes[host])
        with _timed(timing, "workers and platforms"):
            workers = {host: _worker(topo, host) for host in ("w1", "w2")}
            for host, server in servers.items():
                wait_port(topo.ip(host), API_PORT, f"loopml up on {host}", server)
            for host, worker in workers.items():
                wait_text(topo, f"worker-{host}", "pipeline worker", worker)
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
        run(["ip", "netns", "del", topo.ns(host)], check=False)
        run(["ip", "link", "del", topo.ns(host)], check=False)
    run(["ip", "link", "del", topo.bridge], check=False)
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
    return [Topology.load(state.parent) for state in Path(TMP).glob(f"lm*-*/{STATE}")]


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
