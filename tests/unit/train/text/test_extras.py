"""Without the ``text`` extra, training a text model and loading one end in one line that
names the extra to install, not a ``ModuleNotFoundError`` from deep inside. The missing
module is simulated in a fresh interpreter (``sys.modules[name] = None`` makes importing it
fail as if it were not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[4]
CLI = """
import runpy, sys
sys.modules[{missing!r}] = None
sys.argv = ["loopml", "train", "--dataset", "reviews_snap", "--target", "sentiment",
            "--task", "text-classification", "--method", {method!r}]
runpy.run_module("loopml.cli.main", run_name="__main__")
"""
LOAD = """
import sys
sys.modules["tokenizers"] = None
from loopml.core.errors import ConfigurationError
from loopml.packaging.text import TextConfig, load_tokenizer
config = TextConfig(text_column="t", max_length=8, input_names=["ids"], pad_id=0, pad_token="[PAD]")
try:
    load_tokenizer(b"{}", config)
except ConfigurationError as exc:
    print(exc.message)
"""


def _python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"LOOPML_HOME": str(home), "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "passive"}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    ("missing", "method"),
    [("torch", "finetune"), ("transformers", "embeddings"), ("tokenizers", "auto")],
)
def test_training_without_the_text_extra_says_which_extra(
    missing: str, method: str, tmp_path: Path
) -> None:
    done = _python(CLI.format(missing=missing, method=method), tmp_path)
    assert done.returncode == 1, done.stderr
    # Progress lines ("training: 10 s of ...") may come first on a slow machine.
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: training a text model"), done.stderr
    assert f"needs {missing}, which is not installed" in error
    assert error.endswith("pip install 'loopml[text]'")
    assert "Traceback" not in done.stderr


def test_loading_a_text_model_without_tokenizers_says_which_extra(tmp_path: Path) -> None:
    done = _python(LOAD, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("loading a text model needs tokenizers"), done.stdout
    assert done.stdout.strip().endswith("pip install 'loopml[serve-text]'")
