"""Revision packages on local disk: fetched once from the registry, kept while useful.

A revision's package lives in ``<root>/<project>/<name>/<revision>/package``. It is
fetched into a temporary folder and renamed into place, so a folder that exists is whole;
the model server verifies it against the manifest hash before loading anything anyway.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from loopml.core.clock import utcnow
from loopml.core.deployments import Deployment, Revision
from loopml.core.errors import ConflictError
from loopml.core.refs import ModelRef
from loopml.core.registry import VersionStatus
from loopml.deploy.targets.base import RevisionPackage
from loopml.registry import resolve
from loopml.registry.packages import fetch_package
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store.deployments import NewRevision

KEEP_NEWEST = 5
"""Besides the revisions in use, the packages of this many newest revisions stay on disk
(a rollback to one of them starts without fetching)."""
_DONE = ".loopml-fetched"


def deployment_folder(root: Path, project: str, name: str) -> Path:
    """The folder of one deployment's packages (and the local target's log)."""
    return root / project / name


def fetch(
    store: MetadataStore,
    artifacts: ArtifactStore,
    root: Path,
    project: str,
    name: str,
    revision: Revision,
) -> RevisionPackage:
    """The revision's package, fetched unless it is on disk already.

    Raises:
        NotFoundError: the version is gone from the registry.
        ConflictError: the version is not READY.
    """
    ref = ModelRef(name=revision.model, version=revision.version)
    # The hash comes from the registry every time: a package on disk is never its own proof.
    version = resolve(store, project, ref)
    if version.status != VersionStatus.READY:
        raise ConflictError(
            f"version {version.version} of model {version.model!r} is {version.status}: only "
            "READY versions are served",
            details={"model": version.model, "version": version.version},
        )
    folder = deployment_folder(root, project, name) / str(revision.number)
    package = folder / "package"
    done = folder / _DONE
    if not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        staging = folder / "package.partial"
        fetch_package(store, artifacts, project, ref, staging)
        staging.rename(package)
        done.touch()
    return RevisionPackage(
        revision=revision.number,
        model=revision.model,
        version=revision.version,
        manifest_sha256=version.manifest_sha256,
        path=str(package),
    )


def fetch_new(
    store: MetadataStore,
    artifacts: ArtifactStore,
    root: Path,
    project: str,
    name: str,
    new: list[NewRevision],
) -> list[RevisionPackage]:
    """Fetch the packages of a change's new revisions, each into a folder emptied first (a
    folder left by a change that failed to commit may hold another version)."""
    now = utcnow()
    packages = []
    for added in new:
        folder = deployment_folder(root, project, name) / str(added.number)
        shutil.rmtree(folder, ignore_errors=True)
        revision = Revision(
            number=added.number,
            model=added.model,
            version=added.version,
            ref=added.ref,
            role=added.role,
            created_at=now,
        )
        packages.append(fetch(store, artifacts, root, project, name, revision))
    return packages


def remove_unstored(root: Path, stored: set[tuple[str, str]]) -> list[str]:
    """Remove each ``root/PROJECT/NAME`` package folder whose ``(project, name)`` is not in
    ``stored``; returns ``project/name`` of each."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for project in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(f for f in project.iterdir() if f.is_dir()):
            if (project.name, folder.name) not in stored:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(f"{project.name}/{folder.name}")
    return removed


def prune(root: Path, deployment: Deployment) -> None:
    """Remove the packages of revisions neither in use nor among the newest few."""
    folder = deployment_folder(root, deployment.project, deployment.name)
    if not folder.is_dir():
        return
    keep = set(deployment.traffic)
    if deployment.shadow_revision is not None:
        keep.add(deployment.shadow_revision)
    numbers = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    keep.update(numbers[-KEEP_NEWEST:])
    for number in numbers:
        if number not in keep:
            shutil.rmtree(folder / str(number), ignore_errors=True)
