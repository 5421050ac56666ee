"""What a codeset's environment installs: MLflow's python_env.yaml (with -r files read from
the codeset), else requirements.txt, else nothing; bad files are a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import ValidationError
from loopml.train.codeset import requirements


def test_requirements_txt_alone(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("scikit-learn>=1.3\n")
    assert requirements(tmp_path) == "scikit-learn>=1.3\n"
    assert requirements(tmp_path / "missing") == ""


def test_python_env_yaml_wins_and_reads_its_r_file(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy\n")
    (tmp_path / "extra.txt").write_text("pandas>=2\n")
    (tmp_path / "python_env.yaml").write_text(
        "python: '2.7'\nbuild_dependencies: [pip]\ndependencies: [mlflow-skinny, -r extra.txt]\n"
    )
    said: list[str] = []

    text = requirements(tmp_path, said.append)

    assert text.split() == ["mlflow-skinny", "pandas>=2"]
    assert said == [said[0]]
    assert "asks for Python 2.7" in said[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- a list\n", "must be a mapping"),
        ("dependencies: {a: 1}\n", "dependencies must be a list of strings"),
        ("dependencies: [-r ../outside.txt]\n", "is not a file inside the codeset"),
        ("dependencies: [-r missing.txt]\n", "is not a file inside the codeset"),
        ("dependencies: [a\n", "not valid YAML"),
    ],
)
def test_a_bad_python_env_yaml_is_refused(tmp_path: Path, content: str, message: str) -> None:
    codeset = tmp_path / "code"
    codeset.mkdir()
    (tmp_path / "outside.txt").write_text("evil\n")
    (codeset / "python_env.yaml").write_text(content)

    with pytest.raises(ValidationError, match=message):
        requirements(codeset)
