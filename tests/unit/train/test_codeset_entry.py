"""A codeset's entry point: MLproject or loopml.yaml, parameters filled and quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import ValidationError
from loopml.pipelines.parse import parse_spec
from loopml.train.codeset import entry_point

MLPROJECT = """\
name: x
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      name: string
    command: "python train.py --alpha {alpha} --name {name}"
"""


def test_parameters_are_filled_quoted_and_checked(tmp_path: Path) -> None:
    (tmp_path / "MLproject").write_text(MLPROJECT)
    found = entry_point(tmp_path, {"name": "a b; rm -rf /"})
    assert found.command == "python train.py --alpha 0.5 --name 'a b; rm -rf /'"
    assert found.origin == "MLproject"
    with pytest.raises(ValidationError, match="parameter 'name' has no default"):
        entry_point(tmp_path, {})
    with pytest.raises(ValidationError, match="declares no parameter 'beta'"):
        entry_point(tmp_path, {"name": "n", "beta": 1})


def test_loopml_yaml_and_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"no MLproject and no loopml\.yaml"):
        entry_point(tmp_path)
    (tmp_path / "loopml.yaml").write_text("entry_points: {other: {command: x}}\n")
    with pytest.raises(ValidationError, match=r"no entry_points\.main\.command"):
        entry_point(tmp_path)
    (tmp_path / "loopml.yaml").write_text("entry_points: {main: {command: python t.py}}\n")
    assert entry_point(tmp_path).command == "python t.py"


def test_train_custom_needs_its_fit_parameters_unless_given_a_codeset() -> None:
    with_code = "name: p\nsteps:\n  - {name: t, uses: train_custom, with: {codeset: trainer@2}}\n"
    assert parse_spec(with_code).spec.steps[0].with_ == {"codeset": "trainer@2"}
    without = "name: p\nsteps:\n  - {name: t, uses: train_custom, with: {params: {}}}\n"
    with pytest.raises(ValidationError, match="needs dataset, target, task, entrypoint"):
        parse_spec(without)
