"""Make a scikit-learn model that ``mlflow.sklearn.log_model`` stored in a run deployable:
package it as loopml does (ONNX with a parity check, and skops, hashed) on the same run.

This runs in the caller's process, on the caller's machine: it loads the run's pickle, which
only someone who trusts that run should do. loopml's server never loads a client's pickle
(it converts one only inside a sandbox, ``registry.mlflow_packaging``); this is the client
side of that rule. Reading the MLflow model is ``packaging.mlflow_format``, shared with the
server's converter.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
    from loopml.packaging.mlflow_format import input_example, load_estimator, read_mlflow_model

    read = _reader(client, run_id, source, project)
    mlflow_model = read_mlflow_model(read, source)
    # Loaded here, in the caller's process: its own decision about a run it trusts.
    model = load_estimator(mlflow_model)
    if sample is None:
        sample = input_example(read, mlflow_model, source)
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
