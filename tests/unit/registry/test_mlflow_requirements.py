"""An MLflow model's requirements as its environment is built from them: ``mlflow`` is left
out (the converter reads the files without it), and a line that is not a plain requirement
fails the conversion with the line, before pip runs (the version's reason)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.registry.mlflow_packaging import ConversionFailed, _requirements


def test_mlflow_is_left_out_and_the_rest_kept(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow==2.22.0\ncloudpickle==3.0.0\nnumpy\n")
    assert _requirements(tmp_path) == "cloudpickle==3.0.0\nnumpy\n"


def test_a_url_requirement_fails_the_conversion_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "python_env.yaml").write_text("dependencies: [-r requirements.txt]\n")
    (tmp_path / "requirements.txt").write_text(
        "mlflow==2.22.0\nhttps://example.com/steal-1.0.tar.gz\n"
    )
    with pytest.raises(ConversionFailed) as failed:
        _requirements(tmp_path)
    assert str(failed.value).startswith(
        "the MLflow model's environment: requirements.txt, line 2: "
        "'https://example.com/steal-1.0.tar.gz' is not a requirement"
    )
