"""Alembic, driven from code: the migrations ship inside the package, no alembic.ini."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from loopml.core.errors import ServiceUnavailableError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works; it only has to be the same in every loopml process.
_PG_UPGRADE_LOCK_KEY = 0x6C6F6F706D6C  # "loopml"
_LOCK_WAIT_S = 120.0


def alembic_config() -> Config:
    """An Alembic config pointing at the shipped migrations."""
    config = Config()
    # configparser interpolation would choke on a '%' in the install path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def script_directory() -> ScriptDirectory:
    """The shipped migration scripts."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this version of loopml ships."""
    head = script_directory().get_current_head()
    assert head is not None, "loopml ships at least one migration"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, ``None`` when it has no schema yet."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_on(connection: Connection) -> None:
    """Upgrade to head inside the caller's transaction on ``connection``.

    On PostgreSQL a transaction-scoped advisory lock serializes concurrent upgrades; the
    DDL is transactional there, so the second process finds the schema at head.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK_KEY}
        )
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes.

    Two processes upgrading the same SQLite file must not interleave: each would find the
    schema behind and run the same migration. (Each migration is itself one transaction,
    since loopml begins SQLite transactions explicitly; see ``_engine``.) Where ``fcntl``
    is missing (Windows) the lock is skipped.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with path.open("a") as handle:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        "another process has been upgrading the metadata database for "
                        f"over {_LOCK_WAIT_S:.0f} s; retry later",
                        details={"retryable": True},
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
