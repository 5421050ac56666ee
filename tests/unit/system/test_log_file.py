"""The server's log file as ``logging_config`` sets it up: records of uvicorn and loopml at
the level (not other libraries' chatter), one line each or a traceback kept under its
record, rotated at its cap with a fixed number of copies, private, and searched newest first
back through the copies."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest

import loopml
from loopml.core.logs import LogQuery
from loopml.system.logfiles import LogFile, logging_config, newest_first

MAX_BYTES = 4096
BACKUPS = 2
RECORDS = 300  # about 80 bytes each: several rotations of 4 KiB

# Run in a child: dictConfig replaces the process's root handlers, pytest's among them.
LOGGING = textwrap.dedent(
    """
    import json, logging, logging.config, os, sys
    from pathlib import Path
    from loopml.system.logfiles import LogFile, logging_config

    os.umask(0o022)  # the usual umask: without the handler's care the files would be 0644
    file = LogFile(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    logging.config.dictConfig(logging_config("info", sys.argv[4], file))
    logging.getLogger("uvicorn.error").info("first record: Started server process")
    try:
        raise ValueError("column 'age' is missing")
    except ValueError:
        logging.getLogger("loopml.monitor").exception("window failed")
    logging.getLogger("httpx").info("HTTP Request: GET /chatter")
    logging.getLogger("loopml.automation").debug("below the level")
    for i in range(int(sys.argv[5])):
        logging.getLogger("loopml.reconciler").info("reconciled deployment number %04d", i)
    """
)


def _log(tmp_path: Path, log_format: str, records: int = RECORDS) -> LogFile:
    file = LogFile(tmp_path / "logs" / "loopml.log", MAX_BYTES, BACKUPS)
    command = [sys.executable, "-c", LOGGING, str(file.path), str(MAX_BYTES), str(BACKUPS)]
    environment = {**os.environ, "PYTHONPATH": str(Path(loopml.__file__).parents[1])}
    done = subprocess.run(
        [*command, log_format, str(records)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return file


def _copies(file: LogFile) -> list[Path]:
    return sorted(file.path.parent.iterdir())


def test_the_file_is_rotated_at_its_cap_and_searched_back_through_its_copies(
    tmp_path: Path,
) -> None:
    file = _log(tmp_path, "text")
    names = [p.name for p in _copies(file)]
    assert names == ["loopml.log", "loopml.log.1", "loopml.log.2"]  # no .3: BACKUPS copies
    for path in _copies(file):
        assert 0 < path.stat().st_size <= MAX_BYTES, path
    newest = LogQuery(grep="reconciled").last(newest_first(file.path, backups=BACKUPS), 1)
    assert newest[0].endswith(f"reconciled deployment number {RECORDS - 1:04d}")
    # The oldest kept record lies in loopml.log.2: the search reads through to it.
    oldest = next(reversed(list(newest_first(file.path, backups=BACKUPS))))
    assert oldest in file.path.with_name("loopml.log.2").read_text()
    assert file.last(LogQuery(grep=oldest[-40:]), 5) == [oldest]
    assert file.last(LogQuery(), 10 * RECORDS)[0] == oldest


def test_text_lines_carry_time_level_and_logger_and_keep_a_traceback_with_its_record(
    tmp_path: Path,
) -> None:
    file = _log(tmp_path, "text", records=3)
    lines = file.path.read_text().splitlines()
    assert " INFO uvicorn.error: first record: Started server process" in lines[0]
    assert lines[0][:4].isdigit()  # starts with the time
    errors = file.last(LogQuery(level="error"), 10)
    assert errors[0].endswith(" ERROR loopml.monitor: window failed")
    assert errors[1] == "Traceback (most recent call last):"
    assert errors[-1] == "ValueError: column 'age' is missing"
    assert not any("reconciled" in line for line in errors)
    text = "\n".join(lines)
    assert "HTTP Request" not in text  # other libraries: warnings and above only
    assert "below the level" not in text
    assert file.last(LogQuery(grep="reconciled", level="info"), 10) == lines[-3:]


def test_json_lines_hold_one_record_each_traceback_included(tmp_path: Path) -> None:
    file = _log(tmp_path, "json", records=3)
    entries = [json.loads(line) for line in file.path.read_text().splitlines()]
    assert [e["logger"] for e in entries] == ["uvicorn.error", "loopml.monitor"] + [
        "loopml.reconciler"
    ] * 3
    assert entries[1]["level"] == "error"
    assert "ValueError: column 'age' is missing" in entries[1]["exc_info"]
    assert file.last(LogQuery(level="error"), 10) == [json.dumps(entries[1])]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_folder_and_every_file_are_private(
    tmp_path: Path, log_format: Literal["text", "json"]
) -> None:
    file = _log(tmp_path, log_format)
    assert stat.S_IMODE(file.path.parent.stat().st_mode) == 0o700
    for path in _copies(file):  # the files made at each rotation too
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_file_left_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "loopml.log"
    path.parent.mkdir()
    path.write_text("2026-05-01 10:00:00,000 INFO uvicorn.error: before\n")
    path.chmod(0o644)
    file = _log(tmp_path, "text", records=1)
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    assert file.path.read_text().startswith("2026-05-01 10:00:00,000 INFO uvicorn.error: before")


def test_without_a_file_nothing_but_stderr_is_configured() -> None:
    config = logging_config("info", "text", None)
    assert "file" not in config["handlers"]
    assert all("file" not in logger.get("handlers", []) for logger in config["loggers"].values())
