"""A registered version's package, fetched from the artifact store and loaded verified.

Serving, evaluation and the gate all load models this way: the version must be READY, the
files are copied into a local folder, and ``load_model`` checks them against the manifest
hash the registry recorded before anything is deserialized.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from loopml.core import layout
from loopml.core.errors import ConflictError
from loopml.core.keys import validate_key
from loopml.core.refs import ModelRef
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.packaging import LoadedModel, load_model
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, lineage, model_versions

_CHUNK = 1024 * 1024


def fetch_package(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: ModelRef | str,
    dest: Path,
) -> tuple[ModelVersion, Path]:
    """Copy the package of the version ``ref`` names into the new folder ``dest``.

    Raises:
        NotFoundError: no such model, version or alias, or its run is gone.
        ConflictError: the version is not READY.
        FileExistsError: ``dest`` exists.
    """
    with store.session() as session:
        version = model_versions.resolve(session, project, ref)
        info = lineage.logged_model(session, version.logged_model_id)
    if version.status != VersionStatus.READY:
        raise ConflictError(
            f"version {version.version} of model {version.model!r} is {version.status}: only "
            "READY versions are loaded",
            details={"model": version.model, "version": version.version},
        )
    prefix = f"{layout.run_artifacts_prefix(info.project_id, info.run_id)}/{info.path}"
    dest.mkdir(parents=True)
    for obj in artifacts.list(prefix):
        relative = validate_key(obj.key[len(prefix) :].lstrip("/"))
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with artifacts.open(obj.key) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
    return version, dest


def load_version(
    store: MetadataStore,
    artifacts: ArtifactStore,
    project: str,
    ref: ModelRef | str,
    workdir: Path,
) -> tuple[ModelVersion, LoadedModel]:
    """Fetch a version's package into ``workdir/<model>-<version>`` and load it, verified
    against the registry's manifest hash.

    Raises:
        ArtifactIntegrityError: a file does not match the manifest, or the manifest does not
            match the registry's record.
        UnsafeArtifactError: the package holds something that must never be loaded.
    """
    with store.session() as session:
        version = model_versions.resolve(session, project, ref)
    folder = workdir / f"{version.model}-{version.version}"
    if folder.exists():
        shutil.rmtree(folder)
    version, folder = fetch_package(store, artifacts, project, version.ref, folder)
    return version, load_model(folder, manifest_sha256=version.manifest_sha256)
