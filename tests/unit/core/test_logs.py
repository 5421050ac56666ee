"""Log search: levels recognised in free text, continuation lines, the newest-first search
agreeing with the forward one, and the JSON-lines formatter."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from loopml.core.errors import ValidationError
from loopml.core.logs import MAX_GREP, LogQuery, level_of, new_lines
from loopml.system.logfiles import JsonFormatter

LOG = [
    "starting replica",  # before any level: none
    "INFO:     Started server process [4242]",
    'INFO:     127.0.0.1:5000 - "POST /predict HTTP/1.1" 200 OK',
    "2024-05-01 10:00:00,001 WARNING loopml.serve: slow batch (412 ms)",
    "2024-05-01 10:00:01,000 ERROR loopml.serve: predict failed",
    "Traceback (most recent call last):",
    '  File "serve.py", line 3, in predict',
    "ValueError: column 'age' is missing",
    "2024-05-01T10:00:02Z [loopml] revision 1 replica 0: pid 4242 stopped (status 1)",
    '{"ts": "2024-05-01T10:00:03", "level": "critical", "message": "out of memory"}',
    "INFO:     Shutting down",
]


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("INFO:     Uvicorn running on http://127.0.0.1:9000", logging.INFO),
        ("ERROR:    Exception in ASGI application", logging.ERROR),
        ("2024-05-01 10:00:00,001 WARNING loopml.serve: slow", logging.WARNING),
        ("WARN something", logging.WARNING),
        ("DEBUG:root:detail", logging.DEBUG),
        ("FATAL: cannot bind", logging.CRITICAL),
        ('{"level": "error", "message": "x"}', logging.ERROR),
        ('{"severity": "WARNING", "message": "x"}', logging.WARNING),
        ("2024-05-01T10:00:02Z [loopml] traffic {1: 100}", logging.INFO),
        ("2024-05-01T10:00:02Z [loopml] ERROR in probe", logging.ERROR),
        ("an error happened", None),  # lower case is a word of the message
        ("ValueError: boom", None),  # part of a word
        ("x" * 120 + " ERROR", None),  # past the prefix: in the message
        ("", None),
    ],
)
def test_the_level_of_a_line_is_its_first_level_word(line: str, level: int | None) -> None:
    assert level_of(line) == level


def test_grep_keeps_lines_holding_the_text_in_any_case() -> None:
    assert list(LogQuery(grep="predict").select(LOG)) == [LOG[2], LOG[4], LOG[6]]
    assert list(LogQuery(grep="VALUEERROR").select(LOG)) == [LOG[7]]


def test_a_level_keeps_that_level_and_above_with_its_continuation_lines() -> None:
    errors = list(LogQuery(level="error").select(LOG))
    # The traceback continues the ERROR line; the supervisor's line is info.
    assert errors == [LOG[4], LOG[5], LOG[6], LOG[7], LOG[9]]
    warnings = list(LogQuery(level="warning").select(LOG))
    assert warnings == [LOG[3], *errors]
    # The line before any level has none: only kept without a level filter.
    assert LOG[0] not in list(LogQuery(level="debug").select(LOG))
    assert list(LogQuery().select(LOG)) == LOG


def test_grep_and_level_together() -> None:
    assert list(LogQuery(grep="missing", level="error").select(LOG)) == [LOG[7]]
    assert list(LogQuery(grep="predict", level="error").select(LOG)) == [LOG[4], LOG[6]]


@pytest.mark.parametrize(
    "query",
    [
        LogQuery(),
        LogQuery(grep="predict"),
        LogQuery(level="error"),
        LogQuery(level="debug"),
        LogQuery(grep="e", level="warning"),
        LogQuery(grep="nothing like it"),
    ],
)
@pytest.mark.parametrize("count", [1, 2, 3, 5, 100])
def test_the_newest_first_search_equals_the_forward_one(query: LogQuery, count: int) -> None:
    forward = list(query.select(LOG))
    assert query.last(reversed(LOG), count) == forward[-count:]


def test_the_newest_first_search_reads_only_as_far_back_as_it_needs() -> None:
    read: list[str] = []

    def tracked() -> Iterator[str]:
        for line in reversed(LOG):
            read.append(line)
            yield line

    assert LogQuery(level="critical").last(tracked(), 1) == [LOG[9]]
    assert read == [LOG[10], LOG[9]]


def test_a_query_refuses_long_texts_and_unknown_levels() -> None:
    LogQuery(grep="x" * MAX_GREP)
    with pytest.raises(ValidationError, match="at most 200"):
        LogQuery(grep="x" * (MAX_GREP + 1))
    with pytest.raises(ValidationError, match="not one of debug, info, warning"):
        LogQuery(level="loud")


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("replica gone")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("loopml.api", logging.ERROR, __file__, 1, message, args, exc_info)


def test_the_json_formatter_writes_one_object_per_record() -> None:
    line = JsonFormatter().format(_record("deployment %s failed\nsecond line", "churn"))
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"ts", "level", "logger", "message"}
    assert entry["level"] == "error"
    assert entry["logger"] == "loopml.api"
    assert entry["message"] == "deployment churn failed\nsecond line"
    assert entry["ts"].endswith("+00:00")


def test_the_json_formatter_keeps_the_exception() -> None:
    entry = json.loads(JsonFormatter().format(_record("boom", exc=True)))
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: replica gone" in entry["exc_info"]


@pytest.mark.parametrize(
    ("seen", "now", "new"),
    [
        ([], ["a", "b"], ["a", "b"]),
        (["a", "b"], ["a", "b"], []),
        (["a", "b"], ["a", "b", "c"], ["c"]),
        (["a", "b", "c"], ["b", "c", "d", "e"], ["d", "e"]),  # the window moved on
        (["x", "x"], ["x", "x", "x"], ["x"]),  # repeated lines: the longest overlap
        (["a", "b"], ["c", "d"], ["c", "d"]),  # more came than one look returns
        (["a", "b"], [], []),
    ],
)
def test_new_lines_are_those_after_what_was_seen(
    seen: list[str], now: list[str], new: list[str]
) -> None:
    assert new_lines(seen, now) == new
