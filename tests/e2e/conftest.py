"""A real ``loopml up`` on a free port with a temporary home, driven like a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import free_port
from tests.waiting import eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

LOOPML = [sys.executable, "-m", "loopml.cli.main"]
UPLOAD_LIMIT = 1024 * 1024


@dataclass
class RunningServer:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    ready_after_s: float
    env: dict[str, str]

    def cli(
        self, *args: str, timeout: float = 60, cwd: Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LOOPML, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            input=input,
        )


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env.update(LOOPML_HOME=str(home), OMP_WAIT_POLICY="passive")
    return env


@contextmanager
def running_server(
    home: Path,
    extra_env: dict[str, str] | None = None,
    *args: str,
    log_path: Path | None = None,
    own_group: bool = False,
) -> Iterator[RunningServer]:
    """``loopml up ARGS`` on a free port with ``home``; yields once it answers healthy. Its
    stdout and stderr go to ``log_path`` (``home/server.log`` by default); ``own_group``
    starts it in a process group of its own, for a test to kill as a whole."""
    from loopml.client import Client

    port = free_port()
    env = {**base_env(home), **(extra_env or {})}
    log_path = log_path or home / "server.log"
    with log_path.open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            [*LOOPML, "up", "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )
        url = f"http://127.0.0.1:{port}"
        ready_after = None
        with Client(url, timeout=2) as client:
            try:
                eventually(
                    lambda: process.poll() is not None or client.health(),
                    90,
                    f"loopml up on {url} to answer healthy",
                    interval_s=0.02,
                )
            except AssertionError:
                pass  # failed below, with the server's log
            else:
                if process.poll() is None:
                    ready_after = time.monotonic() - started
        try:
            if ready_after is None:
                pytest.fail(f"loopml up did not become ready:\n{log_path.read_text()}")
            env["LOOPML_CLIENT_URL"] = url
            yield RunningServer(url, home, process, ready_after, env)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_cancer_model(server: RunningServer, package_dir: Path, versions: int = 1) -> str:
    """The breast-cancer forest of ``tests.unit.deploy.deploy_support``, logged to a run in
    the server's own store (as a training run would) and registered ``versions`` times as
    model ``cancer``; returns the run's id."""
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore
    from tests.tracking_rows import log_model, make_run
    from tests.unit.deploy.deploy_support import package_files

    package = package_files(package_dir)
    store = MetadataStore(f"sqlite:///{server.home / 'loopml.db'}")
    try:
        run = make_run(store)
        log_model(
            store,
            LocalArtifactStore(server.home / "artifacts"),
            run,
            files=package.files,
            manifest=package.manifest,
        )
    finally:
        store.dispose()
    for _ in range(versions):
        registered = server.cli("models", "register", "cancer", "--run", run.id)
        assert registered.returncode == 0, registered.stderr
    return run.id


def mlflow_cache_folder(config: pytest.Config) -> Path:
    """Where the MLflow client environments are kept: pytest's cache folder; with the cache
    plugin off (CI runs ``-p no:cacheprovider``), a folder of the system's temporary
    directory, kept between runs on the same machine."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("mlflow-clients"))
    return Path(tempfile.gettempdir()) / "loopml-test-mlflow-clients"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module, on the embedded defaults, with a 1 MiB upload limit."""
    home = tmp_path_factory.mktemp("home")
    with running_server(home, {"LOOPML_SERVER_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}) as running:
        yield running


@pytest.fixture
def browser_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context (its own cookies and storage), closed after the test."""
    context = chromium.new_context()
    try:
        yield context
    finally:
        context.close()
