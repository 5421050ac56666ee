"""Log lines searched by text and level (no I/O: the files themselves are
``loopml.system.logfiles``).

What a deployment's replicas and a pipeline's steps print is free text. A line's level is
recognised, not parsed: the first level word in upper case (``INFO:`` from uvicorn,
``ERROR`` from Python logging's usual formats, ``WARN``, ``FATAL``) among its first
characters, or a JSON ``"level"`` field. A line without one (a traceback, the rest of a
multi-line message) continues the line before it and takes its level; the supervisor's
``[loopml]`` lines are ``info``. Lines before any level is seen have none, and a level
filter leaves them out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from loopml.core.errors import ValidationError

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
MAX_GREP = 200
"""Longest text a search takes (characters)."""

_WORDS = {"WARN": logging.WARNING, "FATAL": logging.CRITICAL}
_WORD = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_JSON_LEVEL = re.compile(r'"(?:level|levelname|severity)"\s*:\s*"([A-Za-z]+)"')
_HEAD = 100  # a level word past this is in the message, not the line's prefix
_SUPERVISOR = "[loopml]"


def level_of(line: str) -> int | None:
    """The level ``line`` carries (a ``logging`` number), or ``None`` when it names none."""
    head = line[: _HEAD * 2]
    if head.startswith("{") and (found := _JSON_LEVEL.search(head)):
        word = found.group(1).upper()
        return _WORDS.get(word) or LEVELS.get(word.lower())
    if found := _WORD.search(line[:_HEAD]):
        word = found.group(1)
        return _WORDS.get(word) or LEVELS[word.lower()]
    if _SUPERVISOR in line[:_HEAD]:
        return logging.INFO
    return None


@dataclass(frozen=True)
class LogQuery:
    """Which lines of a log to keep: those holding ``grep`` (any case) at ``level`` or above.

    Raises:
        ValidationError: ``grep`` is longer than ``MAX_GREP``, or ``level`` is not a level.
    """

    grep: str | None = None
    level: str | None = None

    def __post_init__(self) -> None:
        if self.grep is not None and len(self.grep) > MAX_GREP:
            raise ValidationError(
                f"grep is {len(self.grep)} characters long; at most {MAX_GREP} are searched",
                details={"field": "grep", "max_length": MAX_GREP},
            )
        if self.level is not None and self.level not in LEVELS:
            raise ValidationError(
                f"level {self.level!r} is not one of {', '.join(LEVELS)}",
                details={"field": "level", "allowed": list(LEVELS)},
            )

    @property
    def everything(self) -> bool:
        """True when the query keeps every line."""
        return not self.grep and self.level is None

    def keeps(self, line: str, level: int | None) -> bool:
        """Whether ``line``, at ``level`` (its own or the one it continues), is kept."""
        if self.grep and self.grep.casefold() not in line.casefold():
            return False
        return self.level is None or (level is not None and level >= LEVELS[self.level])

    def select(self, lines: Iterable[str]) -> Iterator[str]:
        """The kept lines of ``lines`` (oldest first), in order."""
        current: int | None = None
        for line in lines:
            level = level_of(line)
            if level is None:
                level = current
            else:
                current = level
            if self.keeps(line, level):
                yield line

    def last(self, newest_first: Iterable[str], count: int) -> list[str]:
        """The last ``count`` kept lines, oldest first, reading ``newest_first`` only as far
        back as they take (a line's level may wait for an older line to be known)."""
        kept: list[str] = []
        waiting: list[str] = []  # newer lines continuing a line not read yet
        for line in newest_first:
            level = level_of(line)
            if level is None:
                waiting.append(line)
                continue
            kept.extend(w for w in waiting if self.keeps(w, level))
            waiting.clear()
            if self.keeps(line, level):
                kept.append(line)
            if len(kept) >= count:
                break
        else:
            kept.extend(w for w in waiting if self.keeps(w, None))
        return list(reversed(kept[:count]))


def new_lines(seen: list[str], lines: list[str]) -> list[str]:
    """What ``lines`` (the last lines of a log now) holds after ``seen`` (its last lines at
    the previous look): the lines after the longest end of ``seen`` that ``lines`` starts
    with. Without such an overlap every line is new (more lines came than one look
    returns, or the log started again)."""
    for start in range(max(0, len(seen) - len(lines)), len(seen)):
        overlap = len(seen) - start
        if lines[:overlap] == seen[start:]:
            return lines[overlap:]
    return lines
