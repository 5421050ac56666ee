"""The environment's torch is the CPU build and no NVIDIA wheel came with it
(``scripts/check_cpu_torch.py``, which ``make install`` runs); the check itself fails on a
CUDA build and on an ``nvidia-*`` distribution (a stand-in torch package and dist-info put
first on the path of a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "check_cpu_torch.py"


def _check(extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120
    )


def test_this_environment_has_no_cuda_torch_and_no_nvidia_wheels() -> None:
    done = _check()
    assert done.returncode == 0, done.stderr


def test_the_check_refuses_a_cuda_torch_and_nvidia_wheels(tmp_path: Path) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "__version__ = '2.13.0+cu124'\nclass version:\n    cuda = '12.4'\n"
    )
    info = tmp_path / "nvidia_cublas_cu12-12.4.5.8.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nvidia-cublas-cu12\nVersion: 12.4.5.8\n"
    )
    done = _check(tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: NVIDIA wheels are installed: nvidia-cublas-cu12; expected the CPU build of "
        "torch (2.13.0+cpu)",
        "error: torch 2.13.0+cu124 is a CUDA build (CUDA 12.4); expected the CPU build of "
        "torch (2.13.0+cpu)",
    ]
