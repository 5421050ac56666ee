"""What ``loopml --version`` says beside the package version: the schema revision this
version ships, and the revision of the home's database where asking costs nothing."""

from __future__ import annotations


def schema_head() -> str:
    """The newest Alembic revision this version of loopml ships."""
    from loopml.wiring import schema_head as head

    return head()


def database_line() -> str | None:
    """``database URL: revision R (up to date | ...)`` for the configured database when it
    is a SQLite file that exists; ``None`` otherwise (a server database is never contacted
    here: an unreachable host would hang a version query)."""
    from loopml.core.errors import LoopmlError
    from loopml.settings import load_settings
    from loopml.wiring import database_file, open_metadata_store

    try:
        settings = load_settings()
        if database_file(settings) is None:
            return None
        store = open_metadata_store(settings)
    except (LoopmlError, ValueError):  # a settings file in error: the version still shows
        return None
    try:
        current, head = store.current_revision(), store.head_revision()
    except LoopmlError as exc:
        return f"database {store.safe_url}: unreadable ({exc})"
    finally:
        store.dispose()
    if current == head:
        state = "up to date"
    elif current is None:
        state = "no schema yet; `loopml up` creates it"
    else:
        state = f"not {head}: see `loopml db current`"
    return f"database {store.safe_url}: revision {current or 'none'} ({state})"
