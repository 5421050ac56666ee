"""Reading a model ``mlflow.sklearn.log_model`` wrote: its ``MLmodel``, the estimator's file
(pickle or skops) and its input example, through a ``read(name) -> bytes`` callable, so the
same code reads through loopml's API (``loopml runs package-mlflow``) and from a local folder
(the server's sandboxed converter, ``packaging.mlflow_convert``).

Only the sklearn flavour is read. Loading the estimator (``load_estimator``) unpickles it:
callers do that only where the pickle is trusted or contained (the user's own machine, or the
sandbox).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml  # type: ignore[import-untyped]

from loopml.core.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

Reader = Callable[[str], bytes]


@dataclass(frozen=True)
class MlflowSklearnModel:
    """What packaging needs of an MLflow sklearn model: the estimator's bytes, how they were
    serialized (``cloudpickle``, ``pickle`` or ``skops``) and the ``MLmodel`` description."""

    mlmodel: dict[str, Any]
    data: bytes
    serialization: str


def _sklearn_flavor(mlmodel: dict[str, Any], source: str) -> dict[str, Any]:
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        found = ", ".join(sorted(mlmodel.get("flavors") or {})) or "none"
        raise ValidationError(
            f"the MLflow model at {source!r} has no sklearn flavour (it has: {found}); "
            "only models logged by mlflow.sklearn.log_model can be packaged this way"
        )
    return flavor


def read_mlflow_model(read: Reader, source: str) -> MlflowSklearnModel:
    """The ``MLmodel`` and the estimator's bytes of the MLflow model ``read`` reads.

    Raises:
        ValidationError: no ``MLmodel`` description, or no sklearn flavour.
    """
    mlmodel = yaml.safe_load(read("MLmodel"))
    if not isinstance(mlmodel, dict):
        raise ValidationError(f"{source}/MLmodel is not an MLflow model description")
    flavor = _sklearn_flavor(mlmodel, source)
    data = read(str(flavor.get("pickled_model", "model.pkl")))
    return MlflowSklearnModel(mlmodel, data, str(flavor.get("serialization_format", "cloudpickle")))


def input_example(read: Reader, model: MlflowSklearnModel, source: str) -> pd.DataFrame:
    """The model's input example as rows (MLflow's ``saved_input_example_info``).

    Raises:
        ValidationError: the model was logged without an input example.
    """
    import pandas as pd

    info = model.mlmodel.get("saved_input_example_info")
    if not isinstance(info, dict) or not info.get("artifact_path"):
        raise ValidationError(
            f"the MLflow model at {source!r} has no input example: pass sample rows"
        )
    raw = json.loads(read(str(info["artifact_path"])))
    if isinstance(raw, dict) and "dataframe_split" in raw:
        raw = raw["dataframe_split"]
    if isinstance(raw, dict) and "columns" in raw:
        return pd.DataFrame(raw["data"], columns=raw["columns"])
    return pd.DataFrame(raw)


def load_estimator(model: MlflowSklearnModel) -> Any:
    """The estimator, deserialized in this process: only where its pickle is trusted or
    contained (see the module docstring), whether MLflow wrote it with skops (MLflow 3's
    default) or pickle."""
    if model.serialization == "skops":
        from loopml.packaging._skops import skops_io

        sio = skops_io()
        return sio.loads(model.data, trusted=sio.get_untrusted_types(data=model.data))
    # cloudpickle's output of an estimator is a plain pickle.
    return pickle.load(io.BytesIO(model.data))  # noqa: S301
