"""Make a scikit-learn model that ``mlflow.sklearn.log_model`` stored in a run deployable:
package it as loopml does (ONNX with a parity check, and skops, hashed) on the same run.

This runs in the caller's process, on the caller's machine: it loads the run's pickle, which
only someone who trusts that run should do. loopml's server never loads a client's pickle
(registering an MLflow-format model is refused); this is the client side of that rule.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml  # type: ignore[import-untyped]

from loopml.core.errors import ValidationError
from loopml.core.mlflow_models import PROJECT_ROOT
from loopml.core.runs import LoggedModel

if TYPE_CHECKING:
    import pandas as pd

    from loopml.client import Client

DEFAULT_DEST = "loopml-model"


_MODEL_URI = re.compile(r"^models:/([0-9a-f]{32})$")


def _reader(client: Client, run_id: str, source: str, project: str) -> Callable[[str], bytes]:
    """Reads a file of the MLflow model: a folder of the run (MLflow 2's ``log_model``) or
    ``models:/<model_id>`` (MLflow 3's, stored apart from the run), through loopml's API."""
    match = _MODEL_URI.fullmatch(source)
    if match is None:
        return lambda name: b"".join(
            client.runs.iter_artifact(run_id, f"{source}/{name}", project=project)
        )
    root = PROJECT_ROOT.format(project=project)
    base = f"{root}/api/2.0/mlflow-artifacts/artifacts/models/{match.group(1)}"

    def read(name: str) -> bytes:
        with client._http.stream("GET", f"{base}/{name}") as response:
            return response.read()

    return read


def _sklearn_flavor(mlmodel: dict[str, Any], source: str) -> dict[str, Any]:
    flavor = (mlmodel.get("flavors") or {}).get("sklearn")
    if not isinstance(flavor, dict):
        found = ", ".join(sorted(mlmodel.get("flavors") or {})) or "none"
        raise ValidationError(
            f"the MLflow model at {source!r} has no sklearn flavour (it has: {found}); "
            "only models logged by mlflow.sklearn.log_model can be packaged this way"
        )
    return flavor


def _example(read: Callable[[str], bytes], source: str, info: Any) -> pd.DataFrame:
    import pandas as pd

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


def _load(data: bytes, serialization: str) -> Any:
    """The estimator, loaded here: the caller's own decision about a run it trusts (see the
    module docstring), whether MLflow wrote it with skops (MLflow 3's default) or pickle."""
    if serialization == "skops":
        import skops.io

        return skops.io.loads(data, trusted=skops.io.get_untrusted_types(data=data))
    # cloudpickle's output of an estimator is a plain pickle.
    return pickle.load(io.BytesIO(data))  # noqa: S301


def package_mlflow_model(
    client: Client,
    run_id: str,
    *,
    source: str = "model",
    dest: str = DEFAULT_DEST,
    sample: pd.DataFrame | None = None,
    project: str = "default",
) -> LoggedModel:
    """Package the sklearn model of run ``run_id`` at ``source`` as a loopml package at
    ``dest`` on the same run, and record it; then ``mlflow.register_model(
    "runs:/<run_id>/loopml-model", name)`` (or ``loopml models register``) registers it.

    Args:
        client: a loopml client.
        run_id: the run that logged the model.
        source: the run's folder ``mlflow.sklearn.log_model`` wrote (MLflow 2), or
            ``models:/<model_id>`` (MLflow 3, whose models live apart from runs).
        dest: the folder for loopml's package.
        sample: input rows (signature, parity check, example); the MLflow model's input
            example when omitted.
        project: the run's project.

    Raises:
        ValidationError: no sklearn flavour, no sample, or a model loopml cannot package.
    """
    from loopml.packaging import package_model

    read = _reader(client, run_id, source, project)
    mlmodel = yaml.safe_load(read("MLmodel"))
    if not isinstance(mlmodel, dict):
        raise ValidationError(f"{source}/MLmodel is not an MLflow model description")
    flavor = _sklearn_flavor(mlmodel, source)
    data = read(str(flavor.get("pickled_model", "model.pkl")))
    model = _load(data, str(flavor.get("serialization_format", "cloudpickle")))
    if sample is None:
        info = mlmodel.get("saved_input_example_info")
        sample = _example(read, source, info)
    with tempfile.TemporaryDirectory(prefix="loopml-mlflow-") as tmp:
        package = package_model(model, Path(tmp) / "package", sample=sample)
        for file in sorted(package.path.iterdir()):
            client.runs.upload_artifact(run_id, f"{dest}/{file.name}", file, project=project)
    manifest = package.manifest
    parity = manifest.parity.model_dump(mode="json") if manifest.parity else None
    return client.runs.record_model(
        run_id,
        project=project,
        path=dest,
        flavor=manifest.flavor,
        format=manifest.primary,
        manifest_sha256=package.manifest_sha256,
        signature=manifest.signature.model_dump(mode="json"),
        summary={
            "parity": parity,
            "onnx_error": manifest.onnx_error,
            "from": "mlflow",
            # Where MLflow's client finds the model again (models:/name@alias, loaded by
            # the client itself): the server's get-download-uri answers this source.
            "mlflow_source": source,
        },
    )
