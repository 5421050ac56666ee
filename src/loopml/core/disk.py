"""A full disk, recognised among the errors of what loopml writes through (its own files,
SQLite, PostgreSQL, Delta Lake's Rust writer), and the one error it becomes."""

from __future__ import annotations

import errno

from loopml.core.errors import DiskFullError

_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Texts of the errors that carry no errno: SQLite's SQLITE_FULL, the Rust object store's
# "(os error 28)" inside a DeltaError, PostgreSQL's disk_full SQLSTATE.
_TEXTS = (
    "no space left on device",
    "disk quota exceeded",
    "database or disk is full",
    f"(os error {errno.ENOSPC})",
    f"(os error {errno.EDQUOT})",
)
_PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it was raised from, says the disk is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _ERRNOS:
            return True
        if getattr(exc, "sqlstate", None) == _PG_DISK_FULL:
            return True
        text = str(exc).lower()
        if any(marker in text for marker in _TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full(what: str, where: str, *, store: str) -> DiskFullError:
    """The error for ``what`` not written because the disk holding ``where`` is full.

    Args:
        what: what was not written, as a noun ("table default/sales's new version").
        where: the folder or file on the full disk.
        store: which store refused ("lake", "artifacts", "database", "spool"), the label
            of the refusals counter on ``/metrics``.
    """
    return DiskFullError(
        f"the disk holding {where} is full: {what} was not written; free space on it and "
        "retry (nothing already stored was changed)",
        details={"path": where, "store": store, "retryable": False},
    )
