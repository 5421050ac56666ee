"""Fail loudly when the environment holds a CUDA build of torch or any ``nvidia-*`` wheel.

CI and development machines here train on CPU: ``pip install torch==2.13.0`` resolves to the
local CPU build (``2.13.0+cpu``, cp311 only). A CUDA build (pulled by accident from PyPI, for
example under another Python) brings 2-3 GB of NVIDIA libraries. ``make install`` runs this
after installing; on a GPU machine that wants the CUDA build, set ``ALLOW_CUDA_TORCH=1``.

    python scripts/check_cpu_torch.py
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys


def problems() -> list[str]:
    """What is wrong with the environment's torch; empty when torch is absent or a CPU build."""
    found = []
    nvidia = sorted(
        name
        for dist in importlib.metadata.distributions()
        if (name := dist.metadata["Name"] or "").lower().startswith("nvidia-")
    )
    if nvidia:
        found.append(f"NVIDIA wheels are installed: {', '.join(nvidia)}")
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.version.cuda is not None:
            found.append(f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda})")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"error: {problem}; expected the CPU build of torch (2.13.0+cpu)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
