"""``loopml up``: the API server, with the embedded defaults."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from loopml.cli import _pidfile
from loopml.cli._context import state
from loopml.cli._output import console
from loopml.core.errors import ConfigurationError
from loopml.core.timeline import STARTUP, Step, mark
from loopml.system import heap

if TYPE_CHECKING:
    from fastapi import FastAPI

    from loopml.deploy.gateways import FrontDoor, GatewayProcesses
    from loopml.faces.context import Running
    from loopml.settings import Settings
    from loopml.wiring import MetadataStore

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, auth_enabled: bool) -> None:
    """Refuse a non-loopback address unless authentication is on (secure by default).

    Raises:
        ConfigurationError: ``host`` is reachable from other machines and auth is off.
    """
    if is_loopback(host) or auth_enabled:
        return
    raise ConfigurationError(
        f"refusing to listen on {host}: authentication is off, so loopml listens on loopback "
        "only (127.0.0.1, ::1, localhost). Turn it on (LOOPML_AUTH_ENABLED=true, then "
        "`loopml users create-admin NAME`) and put TLS in front; see docs/security.md."
    )


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: with SO_REUSEADDR a port whose last connections sit in TIME_WAIT
        # (for up to a minute after a stop) is free, while one with a listener is still not.
        # On Windows the option would let two servers share a port, so it is not set there.
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host}:{port}: {exc.strerror}. Is loopml already running? "
                "Pick another port with --port or LOOPML_SERVER_PORT."
            ) from exc


def up(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (off loopback: auth on)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="TCP port."),
    home: Path | None = typer.Option(None, "--home", help="Folder for the embedded data."),
    demo: bool = typer.Option(
        False, "--demo", help="Also run `loopml demo` against it once it is ready."
    ),
    upgrade: bool = typer.Option(
        False,
        "--upgrade",
        help="Upgrade a database at an older schema revision first (back it up before); "
        "without it, such a database is refused.",
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Print the start-up's timeline on stderr: each step, the seconds since the "
        "command began, the process's CPU seconds and the packages it imported.",
    ),
) -> None:
    """Start loopml: API and embedded defaults (SQLite, local artifact folder)."""
    if verbose:
        STARTUP.echo = _print_step
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
    mark("settings read")
    bind = settings.server.host
    check_bind(bind, auth_enabled=settings.auth.enabled)
    running = _pidfile.read(settings.home)
    if running is not None:
        raise ConfigurationError(
            f"loopml is already running with home {settings.home} at {running.url} "
            f"(pid {running.pid}): stop it with `loopml down`, or use another --home"
        )
    _check_port_free(bind, settings.server.port)
    if settings.gateway.port is not None:
        if settings.gateway.port == settings.server.port:
            raise ConfigurationError(
                f"gateway.port {settings.gateway.port} is server.port too: give the gateway "
                "processes a port of their own, or unset gateway.port"
            )
        _check_port_free(bind, settings.gateway.port)
    _prepare_database(settings, upgrade=upgrade)
    mark("database checked")
    if demo and settings.auth.enabled and settings.token is None:
        console.print(
            "[yellow]--demo skipped:[/] authentication is on and no LOOPML_TOKEN is set; once "
            "the server is up, run `loopml login` and then `loopml demo`",
            highlight=False,
        )
    elif demo:
        _demo_when_ready(settings)
    _serve(settings)


def _print_step(step: Step) -> None:
    imported = f"  +{' '.join(step.imported)}" if step.imported else ""
    print(
        f"startup {step.wall_s:6.2f} s  cpu {step.cpu_s:5.2f} s  {step.name}{imported}",
        file=sys.stderr,
        flush=True,
    )


def _prepare_database(settings: Settings, *, upgrade: bool) -> None:
    """Refuse, before anything starts, a database this loopml cannot serve as it is: at an
    older schema revision (unless ``--upgrade``) or at a newer one; an empty one is left
    to the platform's start-up, which creates its schema (``database.auto_upgrade``)."""
    from loopml.wiring import database_file, open_metadata_store

    if settings.database_url.startswith("sqlite") and database_file(settings) is None:
        return  # a new home: no database file yet
    store = open_metadata_store(settings)
    try:
        if store.current_revision() is None:
            return
        before = store.prepare(create=settings.database.auto_upgrade, upgrade=upgrade)
    finally:
        store.dispose()
    if before:
        console.print(
            f"database {store.safe_url}: upgraded from revision {before} to "
            f"{store.head_revision()}",
            highlight=False,
            soft_wrap=True,  # one line in a log, however long the database's path
        )


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
            token = settings.token.get_secret_value() if settings.token else None
            run_demo(url, token=token)
        except BaseException as exc:  # the server outlives a failed demo
            console.print(f"[red]demo failed:[/] {exc}", highlight=False)

    threading.Thread(target=run, name="demo", daemon=True).start()


def _auth_line(store: MetadataStore, settings: Settings) -> str:
    if not settings.auth.enabled:
        return "off (loopback only; every local caller is trusted)"
    from loopml.auth.service import count_admins

    if store.needs_upgrade():
        return "on"
    admins = count_admins(store)
    if admins:
        return f"on ({admins} platform admin{'s' if admins > 1 else ''})"
    return "[bold red]on, but no platform admin yet[/]: run `loopml users create-admin NAME`"


def _serve(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    arenas = settings.server.malloc_arenas
    heap.limit_arenas(os.cpu_count() or 1 if arenas is None else arenas)  # before any thread
    front = _front_door(settings) if in_front(settings) else None
    try:
        early = _spawn_gateways(settings, front)
        from loopml.faces.context import running_of
        from loopml.platform import create_app

        mark("platform imported")
        app = create_app(settings, gateway_secret=early.secret if early is not None else None)
        running = running_of(app)
        running.front, running.gateways = front, early
        # The lifespan starts what health does not need once the port answers (_uvicorn.py).
        running.listening = asyncio.Event()
        mark("app built")
        _print_banner(settings, running)
        heap.settle()  # see loopml.system.heap
        url_host = _url_host(settings)
        url = f"http://{url_host}:{settings.server.port}"
        with _pidfile.held(settings.home, url):
            _run(app, settings, front)
    finally:
        if front is not None:
            front.close()


def _spawn_gateways(settings: Settings, front: FrontDoor | None) -> GatewayProcesses | None:
    """In front of the platform, its gateway processes, started now: their own start (about
    0.3 s of CPU each) overlaps the platform's, and health, which comes through them, does
    not wait for it after the platform listens. Connections wait in the backlog of the
    platform's socket until it serves."""
    if front is None:
        return None
    import secrets

    from loopml.deploy.gateways import GatewayProcesses

    processes = GatewayProcesses.from_settings(
        settings, secret=secrets.token_urlsafe(32), platform_url=front.platform_url, front=front
    )
    processes.spawn()
    mark("gateway processes spawned")
    return processes


def _url_host(settings: Settings) -> str:
    return f"[{settings.server.host}]" if ":" in settings.server.host else settings.server.host


def _print_banner(settings: Settings, running: Running) -> None:
    from loopml._version import __version__

    url_host = _url_host(settings)
    console.print(
        f"loopml {__version__} on [bold]http://{url_host}:{settings.server.port}[/]\n"
        f"  home       {settings.home}\n"
        f"  database   {running.context.store.safe_url}\n"
        f"  artifacts  {settings.artifact_root}\n"
        f"  auth       {_auth_line(running.context.store, settings)}\n"
        f"  portal     http://{url_host}:{settings.server.port}/  (API reference at /docs)",
        highlight=False,
    )
    processes = settings.gateway.processes
    gateways = f"{processes} gateway process{'es' if processes > 1 else ''}"
    if settings.gateway.port is not None:
        console.print(
            f"  serving    http://{url_host}:{settings.gateway.port}/deployments/NAME/predict  "
            f"({gateways})",
            highlight=False,
        )
    if running.front is not None:
        console.print(
            f"  serving    http://{url_host}:{settings.server.port}/deployments/NAME/predict  "
            f"({gateways} in front; the platform behind them on {running.front.platform_url})",
            highlight=False,
        )


def in_front(settings: Settings) -> bool:
    """Whether gateway processes stand in front of the platform on ``server.port``."""
    return settings.gateway.front and settings.gateway.port is None


def _front_door(settings: Settings) -> FrontDoor:
    """``server.port`` for the gateway processes, and the platform's own loopback port."""
    from loopml.deploy.gateways import FrontDoor

    try:
        return FrontDoor(settings.server.host, settings.server.port)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {settings.server.host}:{settings.server.port}: {exc.strerror}"
        ) from exc


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``log_config``: ``server.log_format`` on stderr, and the log file."""
    from loopml.system.logfiles import logging_config

    server = settings.server
    return logging_config(server.log_level, server.log_format, settings.server_log)


KEEP_ALIVE_S = 30
"""How long the server keeps an idle client connection open."""


def _behind_gateways() -> str:
    """Whom the platform trusts for X-Forwarded-For behind its gateway processes: them, and
    what ``FORWARDED_ALLOW_IPS`` names (uvicorn's own default being loopback)."""
    from loopml.serve.gateway import LOOPBACK

    named = os.environ.get("FORWARDED_ALLOW_IPS", LOOPBACK)
    return "*" if "*" in named.split(",") else f"{named},127.0.0.1"


def _run(app: FastAPI, settings: Settings, front: FrontDoor | None = None) -> None:
    """Serve ``app`` on ``server.port``, or, in front of the gateway processes, on the
    front door's loopback port."""

    import uvicorn

    from loopml.cli._uvicorn import PlatformServer

    config = uvicorn.Config(
        app,
        host=settings.server.host.strip("[]"),
        port=settings.server.port,
        log_config=log_config(settings),
        log_level=settings.server.log_level,
        access_log=settings.server.log_level == "debug",
        server_header=False,
        timeout_graceful_shutdown=10,
        # Longer than a client's idle pooled connection lives (the SDK's 4 s, httpx's and
        # most HTTP clients' 5 s): with uvicorn's own 5 s, a request sent on a connection
        # the server was closing at that moment failed as "Server disconnected".
        timeout_keep_alive=KEEP_ALIVE_S,
        # Behind gateway processes every connection comes from loopback, X-Forwarded-For
        # set by them (the client's own kept only from a proxy FORWARDED_ALLOW_IPS names).
        forwarded_allow_ips=_behind_gateways() if front is not None else None,
    )
    host = settings.server.host.strip("[]")
    shown = f"[{host}]" if ":" in host else host
    public = f"http://{shown}:{settings.server.port}" if front else None
    server = PlatformServer(config, app, public)
    server.run(sockets=[front.internal] if front is not None else None)
    if not server.started:  # as uvicorn.run: the port could not be bound, or startup failed
        sys.exit(3)
