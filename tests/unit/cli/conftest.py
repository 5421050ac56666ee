"""The CLI against a real platform: the API app under uvicorn in a thread, on a real port
and a real SQLite file, driven through ``typer``'s runner as a user types the commands."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from loopml.cli import main
from loopml.client import Client
from loopml.core.deployments import DeploymentSpec
from loopml.faces.context import AppContext
from loopml.platform import create_api_app
from loopml.settings import Settings
from loopml.store import deployments
from tests.conftest import free_port
from tests.waiting import eventually

COLUMNS = 80


@dataclass
class Platform:
    url: str
    ctx: AppContext

    def client(self) -> Client:
        return Client(self.url, timeout=30)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """``loopml ARGS`` against this platform, in a terminal of ``COLUMNS`` columns."""
        environment = {"LOOPML_CLIENT_URL": self.url, "COLUMNS": str(COLUMNS), **(env or {})}
        return CliRunner().invoke(main.app, list(args), env=environment)


def make_deployment(platform: Platform, project: str, name: str = "churn-api") -> None:
    """A deployment as the control plane records one (min_replicas 0: no replica starts),
    for alert rules and the monitor to refer to."""
    with platform.ctx.store.session() as session:
        deployments.create(
            session,
            project,
            name,
            spec=DeploymentSpec(model="cancer/1", min_replicas=0),
            revisions=[deployments.NewRevision(1, "cancer", 1, "cancer/1", "primary")],
            roles=deployments.Roles(primary=1),
            traffic={1: 100},
            actor="test",
        )


@contextmanager
def serve(home: Path) -> Iterator[Platform]:
    """The platform with nothing in the background that would change what a test seeded:
    no stream consumers, no monitor loop, and the automation engine asleep."""
    # The port is in the settings: the embedded worker's steps call the server at
    # ``server.port`` (a codeset's MLflow calls), so it must be the one uvicorn listens on.
    port = free_port()
    settings = Settings(
        home=home,
        database={"url": f"sqlite:///{home / 'loopml.db'}"},
        artifacts={"root": str(home / "artifacts")},
        server={"port": port, "streams": False, "automation_interval_s": 3600},
        monitor={"enabled": False},
    )
    app = create_api_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), 60, "the platform to start")
    assert server.started, "the platform's thread ended before it started"
    try:
        yield Platform(f"http://127.0.0.1:{port}", app.state.running.context)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with serve(tmp_path_factory.mktemp("platform")) as running:
        yield running
