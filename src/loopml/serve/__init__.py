"""Online serving, as two programs: the model server (``server``: one model version behind
the Open Inference Protocol (KServe V2) and ``POST /predict``, adaptive micro-batching) and
the gateway (``gateway``: every deployment's front door, routing, canary, shadow, the
activator), with the protocol pieces both speak (``oip``, ``metrics``, ``_fastpath``)::

    runtime = load_runtime(package_dir, manifest_sha256=version.manifest_sha256)
    app = create_model_app(runtime, deployment="churn-prod", model_name="churn", version=3)

or, as a process: ``python -m loopml.serve --package DIR --manifest-sha256 HASH --name churn
--version 3 --deployment churn-prod --port 9001``. See docs/serving.md.

Above ``predictions``, below ``monitor`` and ``deploy``. It imports ``packaging``, the
prediction-log interface (``predictions.intake``, ``predictions.http_sink``), ``settings`` and
``core``; never training, the registry, data or the stores, even indirectly (a contract in
pyproject.toml).

The names below are re-exported from ``loopml.packaging.runtime``, ``loopml.predictions.intake``
and ``server`` on first use, so that importing the gateway (as the deploy targets do) does
not pay for NumPy, pandas and ONNX Runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.packaging.runtime import Columns as Columns
    from loopml.packaging.runtime import ModelRuntime as ModelRuntime
    from loopml.packaging.runtime import Prediction as Prediction
    from loopml.packaging.runtime import load_runtime as load_runtime
    from loopml.predictions.intake import PredictionRecord as PredictionRecord
    from loopml.predictions.intake import PredictionSink as PredictionSink
    from loopml.serve.server.app import create_model_app as create_model_app
    from loopml.serve.server.batching import MicroBatcher as MicroBatcher
    from loopml.serve.server.batching import OverloadedError as OverloadedError
    from loopml.serve.server.config import ModelServerSettings as ModelServerSettings

_LAZY = {
    "MicroBatcher": "loopml.serve.server.batching",
    "OverloadedError": "loopml.serve.server.batching",
    "ModelServerSettings": "loopml.serve.server.config",
    "Columns": "loopml.packaging.runtime",
    "ModelRuntime": "loopml.packaging.runtime",
    "Prediction": "loopml.packaging.runtime",
    "load_runtime": "loopml.packaging.runtime",
    "create_model_app": "loopml.serve.server.app",
    "PredictionRecord": "loopml.predictions.intake",
    "PredictionSink": "loopml.predictions.intake",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loopml.serve' has no attribute {name!r}")
