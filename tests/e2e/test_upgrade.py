"""``loopml up`` on a home whose database another loopml left at another schema revision:
an older one is refused with what to run (or upgraded with ``--upgrade``), a newer one is
refused always, and neither half-starts: no port, no pid file, the database untouched.
A new, empty home still starts with no setup (every other e2e test)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine

from loopml.store import MetadataStore
from loopml.store._migrate import alembic_config, script_directory
from tests.conftest import free_port

from .conftest import LOOPML, base_env, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _home_at(home: Path, revision: str) -> str:
    """A home whose SQLite database Alembic brought to ``revision``; its URL."""
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'loopml.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    return url


def _revision(url: str) -> str | None:
    store = MetadataStore(url)
    try:
        return store.current_revision()
    finally:
        store.dispose()


def _up(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    port = free_port()
    done = subprocess.run(
        [*LOOPML, "up", "--port", str(port), *args],
        env=base_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, port


def _nothing_started(home: Path, port: int) -> None:
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "something listens on the port"
    assert not list(home.glob("*.pid")), "a pid file was left"


def test_an_older_database_is_refused_then_upgraded_with_upgrade(tmp_path: Path) -> None:
    scripts = script_directory()
    head = scripts.get_current_head()
    assert head is not None
    older = scripts.get_revision(head).down_revision
    assert isinstance(older, str)
    home = tmp_path / "home"
    url = _home_at(home, older)

    refused, port = _up(home)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = " ".join((refused.stdout + refused.stderr).split())
    assert f"at schema revision {older}, behind this loopml's {head}" in said
    assert "`loopml db upgrade`" in said
    assert "`loopml up --upgrade`" in said
    _nothing_started(home, port)
    assert _revision(url) == older

    version = subprocess.run(
        [*LOOPML, "--version"], env=base_env(home), capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert f"schema   {head}" in version.stdout
    assert f"revision {older} (not {head}" in version.stdout

    with running_server(home, None, "--upgrade") as server:
        log = (home / "server.log").read_text()
        assert f"upgraded from revision {older} to {head}" in log
        assert _revision(url) == head
        assert server.cli("projects", "list").returncode == 0


def test_a_newer_database_is_refused_even_with_upgrade(tmp_path: Path) -> None:
    home = tmp_path / "home"
    head = script_directory().get_current_head()
    assert head is not None
    url = _home_at(home, head)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_later'")
    finally:
        engine.dispose()
    for args in ((), ("--upgrade",)):
        refused, port = _up(home, *args)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        said = " ".join((refused.stdout + refused.stderr).split())
        assert "'9999_later'" in said
        assert "never downgrades" in said
        _nothing_started(home, port)
    assert _revision(url) == "9999_later"
