"""MLflow 3 logged models whose files are a loopml package (ONNX or skops, with its manifest),
made registrable: ``mlflow.register_model("models:/<model_id>", name)``.

A version is registered from a package a run logged, so the package's files (those its
manifest lists, and the manifest; nothing else, so no pickle comes along) are copied from
the logged model's folder into its source run's artifacts at ``mlflow-models/<model_id>``
and recorded there; registration then verifies them file by file as for any package. A
logged model in MLflow's own format (``MLmodel`` and a pickle) has no manifest and stays
unregistrable here: the server never loads a client's pickle.
"""

from __future__ import annotations

import hashlib

from loopml.core import layout
from loopml.core.errors import NotFoundError, ValidationError
from loopml.core.keys import join_key
from loopml.packaging import MANIFEST_FILE, ModelManifest
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, experiments, logged_models, mlflow_models
from loopml.train.tracking import artifacts as run_artifacts

PACKAGES_FOLDER = "mlflow-models"
"""Where in its source run a registered logged model's package is copied."""


def package_of_mlflow_model(
    store: MetadataStore, artifacts: ArtifactStore, project: str, model_id: str
) -> tuple[str, str]:
    """The run and folder holding the package of logged model ``model_id`` (copied and
    recorded on first use), for ``registry.register_version``.

    Raises:
        NotFoundError: no such logged model, or its files hold no loopml package.
        ValidationError: the logged model has no source run, or its manifest is invalid.
    """
    with store.session() as session:
        model = mlflow_models.get(session, project, model_id)
        project_id = experiments.project_id(session, project)
        recorded = (
            logged_models.list_for_run(session, project, model.source_run_id)
            if model.source_run_id
            else []
        )
    source = layout.mlflow_model_prefix(project_id, model_id)
    if not artifacts.exists(join_key(source, MANIFEST_FILE)):
        raise NotFoundError(
            f"logged model {model_id} holds no loopml package ({MANIFEST_FILE})",
            details={"model_id": model_id},
        )
    if model.source_run_id is None:
        raise ValidationError(
            f"logged model {model_id} has no source run, and loopml registers versions from "
            "a run's package: create it with source_run_id (inside mlflow.start_run())",
            details={"model_id": model_id},
        )
    path = f"{PACKAGES_FOLDER}/{model_id}"
    if not any(p.path == path for p in recorded):
        _copy_and_record(store, artifacts, project, model.source_run_id, source, path)
    return model.source_run_id, path


def _copy_and_record(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    run_id: str,
    source: str,
    path: str,
) -> None:
    data = artifacts.read_bytes(join_key(source, MANIFEST_FILE))
    try:
        manifest = ModelManifest.model_validate_json(data)
    except ValueError as exc:
        raise ValidationError(f"the logged model's {MANIFEST_FILE} is not valid: {exc}") from exc
    target = join_key(run_artifacts.run_root(store, project, run_id), path)
    for name in sorted(manifest.files):
        artifacts.write(join_key(target, name), artifacts.iter_bytes(join_key(source, name)))
    artifacts.write_bytes(join_key(target, MANIFEST_FILE), data)
    run_artifacts.record_model(
        store,
        artifacts,
        project,
        run_id,
        path=path,
        flavor=manifest.flavor,
        format=manifest.primary,
        manifest_sha256=hashlib.sha256(data).hexdigest(),
        signature=manifest.signature.model_dump(mode="json"),
        summary={"from": "mlflow-logged-model", "mlflow_model_id": source.rsplit("/", 1)[-1]},
    )
