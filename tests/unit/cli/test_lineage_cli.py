"""``loopml models lineage`` of a version whose run recorded no input: it says so and why,
instead of printing an empty table."""

from __future__ import annotations

from pathlib import Path

from tests.unit.cli.conftest import Platform
from tests.unit.deploy.deploy_support import package_files, register_files


def test_a_version_without_recorded_inputs_says_why(platform: Platform, tmp_path: Path) -> None:
    made = register_files(platform.ctx.store, platform.ctx.artifacts, package_files(tmp_path))
    shown = platform.cli("models", "lineage", f"{made.model}/{made.version}")
    assert shown.exit_code == 0, shown.output
    flat = " ".join(shown.output.split())
    assert f"{made.model}/{made.version} (READY) <- run" in flat
    assert "inputs: none recorded - run " in flat
    assert "loopml.start_run(inputs=[SNAPSHOT_ID])" in flat
    assert "kind" not in shown.output  # no empty table
