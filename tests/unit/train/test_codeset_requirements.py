"""What a codeset's environment installs: MLflow's python_env.yaml (with -r files read from
the codeset), else requirements.txt, else nothing; bad files are a clear error, a line that
is not a plain requirement is refused with its file and number, and only wheels are
installed (a source distribution's build script would run outside the sandbox)."""

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


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("git+https://github.com/someone/thing.git", "is not a requirement"),
        ("https://example.com/thing-1.0-py3-none-any.whl", "is not a requirement"),
        ("./vendored/thing", "is not a requirement"),
        ("/opt/wheels/thing-1.0.tar.gz", "is not a requirement"),
        ("thing @ https://example.com/thing-1.0.tar.gz", "a direct reference"),
        ("-e .", r"is a pip option \(-e\)"),
        ("--index-url https://pypi.example.com/simple", r"is a pip option \(--index-url\)"),
        ("--extra-index-url=https://pypi.example.com", "is a pip option"),
        ("-r other.txt", r"is a pip option \(-r\)"),
        ("-c constraints.txt", r"is a pip option \(-c\)"),
    ],
)
def test_a_requirement_that_is_not_plain_is_refused_with_its_line(
    tmp_path: Path, line: str, reason: str
) -> None:
    (tmp_path / "requirements.txt").write_text(f"# pinned\nnumpy>=1.26\n\n{line}\n")
    with pytest.raises(ValidationError, match=reason) as refused:
        requirements(tmp_path)
    assert refused.value.details == {"file": "requirements.txt", "line": 4, "requirement": line}
    assert f"requirements.txt, line 4: {line!r}" in refused.value.message
    assert "only plain requirements are installed" in refused.value.message


def test_plain_requirements_with_extras_markers_and_comments_pass(tmp_path: Path) -> None:
    text = (
        "scikit-learn[alldeps]>=1.3,<2 ; python_version >= '3.9'  # the model's\n"
        "numpy==1.26.4\n# a comment\n\nmlflow-skinny\n"
    )
    (tmp_path / "requirements.txt").write_text(text)
    assert requirements(tmp_path) == text


def test_python_env_yaml_lines_and_its_r_files_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "extra.txt").write_text("pandas>=2\n--extra-index-url https://evil\n")
    (tmp_path / "python_env.yaml").write_text("dependencies: [mlflow-skinny, -r extra.txt]\n")
    with pytest.raises(ValidationError, match=r"extra.txt, line 2: '--extra-index-url"):
        requirements(tmp_path)
    (tmp_path / "python_env.yaml").write_text("dependencies: ['thing @ file:///tmp/x']\n")
    with pytest.raises(ValidationError, match=r"python_env\.yaml, line 1"):
        requirements(tmp_path)


# A source distribution is never built, by the host's pip or the sandbox's:
# tests/unit/registry/test_env_install.py::test_a_source_distribution_is_never_built.
