"""The CLI's habits that need no server: tables fitted to the terminal, CSV, ``--since``,
progress lines in logs, and the current project's precedence."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml.cli import _context, _heartbeat, _output, main
from loopml.cli.events import parse_since
from loopml.core.errors import ValidationError

RUN_ID = "0123456789abcdef0123456789abcdef"


def test_a_wide_list_keeps_its_first_columns_whole_and_drops_the_rest() -> None:
    columns = ["id", "name", "status", "experiment", "started", "accuracy", "roc_auc"]
    rows = [[RUN_ID, "bright-owl-12", "FINISHED", "churn_snap", "2026-11-22 09:00:00", "0.9", "1"]]

    shown = _output.fit_columns(columns, rows, 80, required=3)

    assert shown[:3] == [0, 1, 2]
    width = 1 + sum(max(len(columns[i]), len(rows[0][i])) + 3 for i in shown)
    assert width <= 80
    assert 6 not in shown  # the least important column went first
    assert _output.fit_columns(columns, rows, 400, required=3) == list(range(7))


def test_listing_as_csv_and_a_narrow_table(capsys: pytest.CaptureFixture[str]) -> None:
    columns = ["id", "name", "description"]
    rows = [[RUN_ID, "a, b", "x" * 90]]

    _output.listing(columns, rows, "csv")
    assert capsys.readouterr().out == f'id,name,description\n{RUN_ID},"a, b",{"x" * 90}\n'

    _output.listing(columns, rows, "table", required=2)
    captured = capsys.readouterr()
    assert max(len(line) for line in captured.out.splitlines()) <= 80
    assert "description" not in captured.out
    assert "1 more column(s): description" in captured.err


def test_output_formats_are_checked() -> None:
    assert _output.check_output("table", wide=True) == "wide"
    with pytest.raises(ValidationError, match="expected one of table, wide, json, csv"):
        _output.check_output("metrics.auc desc")


def test_since_takes_a_duration_ago_or_an_iso_time() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2026-11-01T08:00") == datetime(2026, 11, 1, 8, 0)
    with pytest.raises(ValidationError, match="a duration ago"):
        parse_since("yesterday")


def test_a_heartbeat_prints_plain_lines_while_the_block_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _heartbeat.heartbeat(lambda s: f"working, {s:.1f} s", 0.05):
        time.sleep(0.3)
    time.sleep(0.1)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3
    assert all(line.startswith("working, ") for line in lines)
    assert _heartbeat.interval_for(60) == 10
    assert _heartbeat.interval_for(3600) == 30


def test_the_current_project_env_beats_loopml_use_which_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.delenv("LOOPML_PROJECT", raising=False)
    runner = CliRunner()

    def current() -> str:
        return runner.invoke(main.app, ["use"]).output

    assert "current project: default (from nothing chosen)" in current()
    _context.project_file(tmp_path).write_text("churn\n")
    assert "current project: churn (from loopml use" in current()
    monkeypatch.setenv("LOOPML_PROJECT", "fraud")
    assert "current project: fraud (from LOOPML_PROJECT)" in current()
    assert "choice cleared" in runner.invoke(main.app, ["use", "--clear"]).output
    assert not _context.project_file(tmp_path).exists()
