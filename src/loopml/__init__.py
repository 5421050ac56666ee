"""loopml: the whole machine-learning loop in one self-hosted install.

``loopml.start_run`` and ``loopml.train_model`` are imported on first use, so
``import loopml`` (and the CLI) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml._version import __version__

if TYPE_CHECKING:
    from loopml.sdk.text import train_text_model as train_text_model
    from loopml.sdk.tracking import ActiveRun as ActiveRun
    from loopml.sdk.tracking import start_run as start_run
    from loopml.sdk.training import TrainOutcome as TrainOutcome
    from loopml.sdk.training import train_model as train_model

__all__ = [
    "ActiveRun",
    "TrainOutcome",
    "__version__",
    "start_run",
    "train_model",
    "train_text_model",
]

_LAZY = {
    "start_run": "loopml.sdk.tracking",
    "ActiveRun": "loopml.sdk.tracking",
    "train_model": "loopml.sdk.training",
    "TrainOutcome": "loopml.sdk.training",
    "train_text_model": "loopml.sdk.text",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loopml' has no attribute {name!r}")
