"""Alembic, driven from code: the migrations ship inside the package, no alembic.ini."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from loopml.core.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any constant works; it only has to be the same in every loopml process.
_PG_UPGRADE_LOCK_KEY = 0x6C6F6F706D6C  # "loopml"
_LOCK_WAIT_S = 120.0
_VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


def alembic_config() -> Config:
    """An Alembic config pointing at the shipped migrations."""
    from alembic.config import Config

    config = Config()
    # configparser interpolation would choke on a '%' in the install path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def script_directory() -> ScriptDirectory:
    """The shipped migration scripts, as Alembic reads them (to write or run migrations)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


# A migration file's `revision: str = "0020_step_resources"` and `down_revision ... = None`.
_DECLARED = re.compile(
    r"""^(revision|down_revision)\b[^=\n]*=\s*(?:"([^"\n]*)"|'([^'\n]*)'|None)\s*$""",
    re.MULTILINE,
)


@cache
def revisions() -> dict[str, str | None]:
    """Each shipped revision and the one it follows, read from the migration files' text.

    Not through Alembic: importing it (with Mako and Pygments) was about 0.1 s of every
    start-up, for a question two lines of each file answer. ``tests/unit/store/
    test_migrations.py`` holds this equal to Alembic's own reading.
    """
    found: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        declared = {m[1]: m[2] or m[3] or None for m in _DECLARED.finditer(path.read_text())}
        if "revision" not in declared or "down_revision" not in declared:
            raise RuntimeError(f"{path.name}: no `revision` and `down_revision` found")
        found[str(declared["revision"])] = declared["down_revision"]
    return found


def head_revision() -> str:
    """The newest revision this version of loopml ships (the one no other follows)."""
    shipped = revisions()
    heads = set(shipped) - set(shipped.values())
    assert len(heads) == 1, f"loopml ships one line of migrations, not {sorted(heads)}"
    return heads.pop()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (Alembic's version table), ``None`` when it has no
    schema yet."""
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    versions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(versions) > 1:
        raise ServiceUnavailableError(
            f"the metadata database records {len(versions)} schema revisions "
            f"({', '.join(sorted(versions))}); loopml ships one line of migrations",
            details={"retryable": False},
        )
    return versions[0] if versions else None


def upgrade_on(connection: Connection) -> None:
    """Upgrade to head inside the caller's transaction on ``connection``.

    On PostgreSQL a transaction-scoped advisory lock serializes concurrent upgrades; the
    DDL is transactional there, so the second process finds the schema at head.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK_KEY}
        )
    from alembic import command

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
