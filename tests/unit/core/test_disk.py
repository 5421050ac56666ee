"""A full disk recognised in each library's error, the one error it becomes, and the server
log's file handler dropping (and counting) what a full disk refuses."""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from loopml.core.disk import disk_full, is_disk_full
from loopml.core.errors import DiskFullError, ServiceUnavailableError, error_from_body
from loopml.store._errors import translate
from loopml.system.logfiles import PrivateRotatingFileHandler


def _chained(inner: BaseException) -> RuntimeError:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        sqlite3.OperationalError("database or disk is full"),
        # deltalake's DeltaError from the Rust object store: text only
        Exception("Generic LocalFileSystem error: Unable to copy data to file: (os error 28)"),
    ],
)
def test_a_full_disk_is_recognised_directly_and_through_a_chain(error: Exception) -> None:
    assert is_disk_full(error)
    assert is_disk_full(_chained(error))


@pytest.mark.parametrize(
    "error", [OSError(errno.EIO, "Input/output error"), ValueError("disk"), None]
)
def test_other_errors_are_not_a_full_disk(error: Exception | None) -> None:
    assert not is_disk_full(error)


def test_the_error_says_what_and_where_and_crosses_http_whole() -> None:
    error = disk_full("table default/sales's new version", "/srv/home/artifacts", store="lake")
    assert (error.status, error.code) == (507, "disk_full")
    assert isinstance(error, ServiceUnavailableError)
    assert error.message.startswith(
        "the disk holding /srv/home/artifacts is full: table default/sales's new version was "
        "not written; free space"
    )
    assert error.details == {"path": "/srv/home/artifacts", "store": "lake", "retryable": False}
    rebuilt = error_from_body(507, error.to_dict())
    assert type(rebuilt) is DiskFullError
    assert rebuilt.details == error.details


def test_sqlite_full_becomes_disk_full_naming_the_database() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    wrapped = sa_exc.OperationalError("INSERT ...", {}, full)
    mapped = translate(wrapped, "sqlite", "/srv/home/loopml.db")
    assert isinstance(mapped, DiskFullError)
    assert mapped.message.startswith("the disk holding /srv/home/loopml.db is full")
    locked = sa_exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError("locked"))
    assert type(translate(locked, "sqlite")) is ServiceUnavailableError


class _FullDisk:
    """A file object on a disk that is full, until ``space`` is set."""

    def __init__(self) -> None:
        self.space = False
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        if not self.space:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def tell(self) -> int:
        return 0

    def close(self) -> None:
        pass


def test_the_server_log_drops_and_counts_records_with_one_line_per_full_spell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = PrivateRotatingFileHandler(str(tmp_path / "loopml.log"), 1 << 20, 1)
    handler.stream.close()
    disk = _FullDisk()
    handler.stream = disk  # type: ignore[assignment]
    before = PrivateRotatingFileHandler.dropped_for_space
    record = logging.LogRecord("loopml", logging.ERROR, __file__, 1, "refused", None, None)
    for _ in range(3):
        handler.emit(record)
    assert PrivateRotatingFileHandler.dropped_for_space - before == 3
    disk.space = True
    handler.emit(record)
    handler.emit(record)
    said = capsys.readouterr().err.splitlines()
    assert said == [
        f"loopml: the disk holding the server log {handler.baseFilename} is full: its records "
        'are dropped (counted in loopml_disk_full_refusals_total{store="log"}) until space '
        "returns",
        f"loopml: the server log {handler.baseFilename} is written again",
    ]
    assert len(disk.lines) == 2


def test_a_background_loops_full_disk_is_one_brief_line_a_minute() -> None:
    """What the reconciler logged on a full disk, round after round: its traceback. The
    server's handlers now say it in one line, once a minute, and keep other tracebacks."""
    import io

    from loopml.system.logfiles import DiskFullBrief

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(DiskFullBrief())
    logger = logging.getLogger("loopml.test_disk_brief")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(3):
            try:
                try:
                    raise OSError(errno.ENOSPC, "No space left on device")
                except OSError as exc:
                    raise disk_full("the change", "/home/loopml.db", store="database") from exc
            except DiskFullError:
                logger.exception("deployment %s: could not record its status", "a/b")
        try:
            raise RuntimeError("something else")
        except RuntimeError:
            logger.exception("another failure")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "deployment a/b: could not record its status: the disk holding /home/loopml.db is "
        "full: the change was not written; free space on it and retry (nothing already "
        "stored was changed)"
    )
    assert lines[1] == "another failure"
    assert lines[2] == "Traceback (most recent call last):"
    assert "RuntimeError: something else" in lines
    assert sum("could not record" in line for line in lines) == 1
