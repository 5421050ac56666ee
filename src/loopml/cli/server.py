"""``loopml up``: the API server, with the embedded defaults."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loopml.cli._context import state
from loopml.cli._output import console
from loopml.core import heap
from loopml.core.errors import ConfigurationError

if TYPE_CHECKING:
    from loopml.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror}. Is loopml already running? "
                "Pick another port with --port or LOOPML_SERVER_PORT."
            ) from exc


def up(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (loopback only for now)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="TCP port."),
    home: Path | None = typer.Option(None, "--home", help="Folder for the embedded data."),
    demo: bool = typer.Option(
        False, "--demo", help="Also run `loopml demo` against it once it is ready."
    ),
) -> None:
    """Start loopml: API and embedded defaults (SQLite, local artifact folder)."""
    from loopml.settings import load_settings

    overrides: dict[str, object] = {}
    server: dict[str, object] = {}
    if host is not None:
        server["host"] = host
    if port is not None:
        server["port"] = port
    if server:
        overrides["server"] = server
    if home is not None:
        overrides["home"] = home
    settings = load_settings(**overrides) if overrides else state(ctx).settings
    bind = settings.server.host
    if not is_loopback(bind):
        raise ConfigurationError(
            f"refusing to listen on {bind}: loopml has no authentication yet, so it only "
            "listens on loopback (127.0.0.1, ::1, localhost). To reach it from elsewhere, put "
            "an authenticating reverse proxy in front of it."
        )
    _check_port_free(bind, settings.server.port)
    if demo:
        _demo_when_ready(settings)
    _serve(settings)


def _demo_when_ready(settings: Settings) -> None:
    """Run the demo in a background thread once the server answers; the server keeps
    running after it."""
    import threading
    import time

    from loopml.pipelines.worker import server_url

    url = server_url(settings)

    def run() -> None:
        from loopml.cli.demo import run_demo
        from loopml.client import Client
        from loopml.core.errors import LoopmlError

        with Client(url, timeout=2) as client:
            for _ in range(600):
                try:
                    client.health()
                    break
                except LoopmlError:
                    time.sleep(0.1)
        try:
            run_demo(url)
        except BaseException as exc:  # the server outlives a failed demo
            console.print(f"[red]demo failed:[/] {exc}", highlight=False)

    threading.Thread(target=run, name="demo", daemon=True).start()


def _serve(settings: Settings) -> None:
    import uvicorn

    from loopml import __version__
    from loopml.api import create_app

    settings.home.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    url_host = f"[{settings.server.host}]" if ":" in settings.server.host else settings.server.host
    console.print(
        f"loopml {__version__} on [bold]http://{url_host}:{settings.server.port}[/]\n"
        f"  home       {settings.home}\n"
        f"  database   {app.state.ctx.store.safe_url}\n"
        f"  artifacts  {settings.artifact_root}",
        highlight=False,
    )
    heap.settle()  # see loopml.core.heap
    uvicorn.run(
        app,
        host=settings.server.host.strip("[]"),
        port=settings.server.port,
        log_level=settings.server.log_level,
        access_log=settings.server.log_level == "debug",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
