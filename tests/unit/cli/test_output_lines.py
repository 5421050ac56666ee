"""Into a pipe or a log file a printed line stays one line: Rich folded them at 80 columns
when no terminal was there (issue 55), which broke log lines and commands pasted from them.
A terminal, or a ``COLUMNS`` the caller set, still gets lines fitted to its width."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopml.cli._output import console

from .conftest import Platform

LONG = " ".join(f"word{i}" for i in range(40))  # 279 characters


def test_a_line_into_a_pipe_is_not_folded(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    console.print(LONG)
    assert capsys.readouterr().out == LONG + "\n"


def test_a_width_the_caller_set_still_folds(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    console.print(LONG)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines
    assert max(len(line) for line in lines) <= 80


def test_datasets_create_prints_whole_lines_into_a_pipe(platform: Platform, tmp_path: Path) -> None:
    table = "customer_churn_events_from_the_billing_system"
    pq.write_table(
        pa.table({"x": list(range(40)), "y": [i % 2 for i in range(40)]}), tmp_path / "t.parquet"
    )
    assert platform.cli("ingest", str(tmp_path / "t.parquet"), "-t", table).exit_code == 0
    made = platform.cli(
        "datasets",
        "create",
        f"{table}_snapshot",
        "--from",
        table,
        "--split",
        "0.25",
        env={"COLUMNS": None},  # type: ignore[dict-item]
    )
    assert made.exit_code == 0, made.stdout
    lines = made.stdout.splitlines()
    assert lines[0].startswith(f"created {table}_snapshot@1: 40 rows, hash "), lines
    assert lines[1] == f"sources: {table}@0", lines
    assert lines[2].startswith("split: train 30 rows ("), lines
    assert lines[2].endswith("; eval_fraction 0.25, seed 0"), lines
