"""A deployment's log file read newest first, across blocks and its rotated predecessor,
agreeing with the plain tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.logs import LogQuery
from loopml.deploy.targets._process import rotate, tail
from loopml.system.logfiles import newest_first


def _write(path: Path, lines: list[str]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in lines)


@pytest.mark.parametrize("block", [1, 7, 64 * 1024])
def test_lines_come_newest_first_across_blocks_and_the_rotated_file(
    tmp_path: Path, block: int
) -> None:
    log = tmp_path / "replicas.log"
    older = [f"INFO: old line {i}" for i in range(5)]
    _write(log, older)
    rotate(log, max_bytes=10)
    assert log.with_name("replicas.log.1").exists()
    newer = ["INFO: new line", "", "ERROR: broke: ünïcode ✓", "  continued\r"]
    _write(log, newer)
    expected = [*older, "INFO: new line", "", "ERROR: broke: ünïcode ✓", "  continued"]
    # Small blocks end inside lines, and inside a character's UTF-8 bytes.
    assert list(newest_first(log, block)) == list(reversed(expected))
    assert tail(log, 100) == expected


def test_a_search_finds_old_lines_in_the_rotated_file(tmp_path: Path) -> None:
    log = tmp_path / "replicas.log"
    _write(log, ["ERROR: first failure", "Traceback (most recent call last):"])
    rotate(log, max_bytes=1)
    _write(log, [f"INFO: request {i}" for i in range(1000)])
    found = LogQuery(level="error").last(newest_first(log), 10)
    assert found == ["ERROR: first failure", "Traceback (most recent call last):"]
    assert LogQuery(grep="request 99").last(newest_first(log), 3) == [
        "INFO: request 997",
        "INFO: request 998",
        "INFO: request 999",
    ]


def test_a_missing_log_has_no_lines(tmp_path: Path) -> None:
    assert list(newest_first(tmp_path / "replicas.log")) == []
