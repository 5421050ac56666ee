"""The server's own log and log files on disk: files read newest first (a replica's, the
server's through its rotated copies), the JSON-lines form of a record, the rotated private
file the server writes, a disk-full spell said once, and the logging configuration of
``loopml up``. Which lines a search keeps is ``loopml.core.logs`` (no I/O)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, ClassVar, Literal

from loopml.core.disk import is_disk_full
from loopml.core.errors import DiskFullError
from loopml.core.logs import LogQuery

_BLOCK = 64 * 1024


def newest_first(path: Path, block: int = _BLOCK, backups: int = 1) -> Iterator[str]:
    """The lines of a text file, newest first, then its rotated predecessors' (``path.1``
    to ``path.<backups>``): read backwards a block at a time, so a search stops as soon as
    it has found enough."""
    for number in range(backups + 1):
        yield from _backwards(path.with_name(f"{path.name}.{number}") if number else path, block)


def _backwards(path: Path, block: int) -> Iterator[str]:
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        end = file.seek(0, os.SEEK_END)
        rest = b""  # the end of a line whose beginning lies in an older block
        newest = True
        while end > 0:
            step = min(block, end)
            end -= step
            file.seek(end)
            parts = (file.read(step) + rest).split(b"\n")
            if newest and parts[-1] == b"":
                parts.pop()  # the file's final newline ends a line, it starts none
            newest = False
            rest = parts[0] if parts else b""
            for part in reversed(parts[1:]):
                yield part.decode("utf-8", errors="replace").rstrip("\r")
        if rest:
            yield rest.decode("utf-8", errors="replace").rstrip("\r")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` and, when the record carries them, ``exc_info`` and ``stack_info`` (for
    ELK, Loki and other collectors that read JSON lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class DiskFullBrief(logging.Filter):
    """A record that carries a full disk's error says so in one line, without its
    traceback, and the same line is let through once a minute at most: on a full disk every
    background loop (the reconciler, the monitor, housekeeping) fails each round, and a
    traceback a round would bury the one thing to do, free space. Other records pass as
    they are."""

    every_s: ClassVar[float] = 60.0
    _last: ClassVar[dict[tuple[str, str], float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not getattr(record, "disk_full", False):
            if error is None or not is_disk_full(error):
                return True
            key = (record.name, str(record.msg))
            now = time.monotonic()
            last = DiskFullBrief._last.get(key)
            if last is not None and now - last < self.every_s:
                return False
            DiskFullBrief._last[key] = now
            record.msg = f"{record.getMessage()}: {_disk_full_reason(error)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.disk_full = True  # the next handler sees it already brief
        return True


def _disk_full_reason(error: BaseException) -> str:
    """The loopml message of the full disk in ``error``'s chain, else the error itself."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return seen.message
        seen = seen.__cause__ or seen.__context__
    return f"the disk is full ({error})"


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text form of a record in the server's log file: its level word comes within the
first characters, where ``level_of`` looks, and a traceback's lines continue it."""


class PrivateRotatingFileHandler(RotatingFileHandler):
    """A ``RotatingFileHandler`` whose folder is made 0700 and whose files are 0600, the new
    one after each rotation included: the server's log sits in the home, beside its secrets,
    and may quote what callers sent."""

    dropped_for_space: ClassVar[int] = 0
    """Records not written because the disk was full, by every such handler of the process:
    they are dropped (the server goes on) with one line on stderr per full spell."""

    def __init__(self, filename: str, max_bytes: int, backups: int) -> None:
        folder = Path(filename).parent
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True)
        super().__init__(filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._full = False  # in a full spell: records are being dropped
        self._failed = False  # the record being emitted was dropped

    def emit(self, record: logging.LogRecord) -> None:
        self._failed = False
        super().emit(record)  # errors go to handleError
        if self._full and not self._failed:
            self._full = False
            _say(f"loopml: the server log {self.baseFilename} is written again")

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not is_disk_full(error):
            super().handleError(record)
            return
        self._failed = True
        PrivateRotatingFileHandler.dropped_for_space += 1
        if not self._full:
            self._full = True
            _say(
                f"loopml: the disk holding the server log {self.baseFilename} is full: its "
                "records are dropped (counted in loopml_disk_full_refusals_total"
                '{store="log"}) until space returns'
            )

    def _open(self) -> io.TextIOWrapper:
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if os.name != "nt":
            os.fchmod(descriptor, 0o600)  # a file made before, under a wider umask
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr may be on the full disk too
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class LogFile:
    """Where the server keeps its log: ``path``, rotated past ``max_bytes`` into
    ``path.1`` ... ``path.<backups>``."""

    path: Path
    max_bytes: int
    backups: int

    def last(self, query: LogQuery, count: int) -> list[str]:
        """The last ``count`` lines ``query`` keeps, oldest first, read newest first back
        through the rotated copies as far as they take."""
        return query.last(newest_first(self.path, backups=self.backups), count)


def logging_config(
    level: str, log_format: Literal["text", "json"], file: LogFile | None = None
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (uvicorn's ``log_config``) for ``loopml up``.

    On stderr: ``text`` is uvicorn's own lines (loopml's warnings and above besides), ``json``
    one JSON object per record of uvicorn and loopml at ``level``. With ``file`` the same
    records of uvicorn and loopml at ``level`` are also appended to it, as JSON lines or as
    ``TEXT_FORMAT`` lines, rotated by size. Other libraries log their warnings and above
    (httpx logs every request at info).
    """
    number = level.upper()
    json_lines = log_format == "json"
    formatters: dict[str, Any] = {"json": {"()": JsonFormatter}, "text": {"format": TEXT_FORMAT}}
    handlers: dict[str, Any] = {}
    if json_lines:
        handlers["stderr"] = _stream("json", "ext://sys.stderr")
    else:  # uvicorn's LOGGING_CONFIG, named by string: core imports no server
        formatters["default"] = {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        }
        formatters["access"] = {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        }
        handlers["stderr"] = _stream("default", "ext://sys.stderr")
        handlers["access"] = _stream("access", "ext://sys.stdout")
        # What Python's last-resort handler printed before the file took loopml's records.
        handlers["warnings"] = {**_stream("default", "ext://sys.stderr"), "level": "WARNING"}
    kept = []
    if file is not None:
        kept = ["file"]
        handlers["file"] = {
            "()": PrivateRotatingFileHandler,
            "formatter": "json" if json_lines else "text",
            "filename": str(file.path),
            "max_bytes": file.max_bytes,
            "backups": file.backups,
        }
    for handler in handlers.values():
        handler["filters"] = ["disk_full"]
    access: dict[str, Any] = {"level": number, "propagate": True}
    if not json_lines:
        access = {"handlers": ["access", *kept], "level": number, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"disk_full": {"()": DiskFullBrief}},
        "formatters": formatters,
        "handlers": handlers,
        "loggers": {
            "uvicorn": {"handlers": ["stderr", *kept], "level": number, "propagate": False},
            "uvicorn.error": {"level": number, "propagate": True},
            "uvicorn.access": access,
            "loopml": {"level": number},
        },
        "root": {"handlers": ["stderr" if json_lines else "warnings", *kept], "level": "WARNING"},
    }


def _stream(formatter: str, stream: str) -> dict[str, Any]:
    return {"class": "logging.StreamHandler", "formatter": formatter, "stream": stream}
