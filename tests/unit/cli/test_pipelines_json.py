"""``--json`` output of the pipeline commands that also say what they do along the way: stdout
holds the JSON alone (a script parses it), the running commentary goes to stderr."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.storage.test_codetree import write

from .conftest import Platform

TWO_STEPS = """\
name: two-steps
steps:
  - {name: first, python: 'm:f'}
  - {name: second, python: 'm:f', needs: [first]}
"""


def test_run_wait_json_prints_only_json_on_stdout(platform: Platform) -> None:
    with platform.client() as client:
        client.pipelines.apply(TWO_STEPS)
    # The platform's embedded worker runs the first step, which fails (no module m).
    result = platform.cli("pipelines", "run", "two-steps", "--wait", "--poll", "0.05", "--json")
    assert result.exit_code == 1  # a failed run is not a success
    shown = json.loads(result.stdout)
    assert shown["pipeline"] == "two-steps"
    assert shown["status"] == "FAILED"
    assert [s["name"] for s in shown["steps"]] == ["first", "second"]
    assert "  first: FAILED" in result.stderr


def test_assign_json_says_it_applied_the_shipped_loop_on_stderr(
    platform: Platform, tmp_path: Path
) -> None:
    write(tmp_path / "code", {"train.py": "x"})
    assert platform.cli("codesets", "register", "trainer", str(tmp_path / "code")).exit_code == 0
    result = platform.cli(
        "pipelines",
        "assign",
        "train-code",
        "--codeset",
        "trainer",
        "--no-run",
        "--input",
        "model=m",
        "--input",
        "deployment=d",
        "--input",
        "dataset=s",
        "--input",
        "target=y",
        "--json",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["trigger"]["name"] == "train-code-on-trainer"
    assert shown["run"] is None
    assert "applied the shipped pipeline train-code as version 1" in result.stderr
