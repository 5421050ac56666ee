"""Registering an MLflow-format model (``MLmodel`` and a pickle or skops file): the version is
accepted at once as PACKAGING, and a converter job packages it on the server, in the sandbox.

The job (``convert``, run by ``MlflowPackager``'s threads, never by the request): copy the
MLflow model's files from the artifact store into a fresh scratch folder; build its
environment from its ``requirements.txt`` / ``python_env.yaml`` (``train.codeset``'s cached
virtualenvs, pip run in the sandbox too, ``registry.env_install``; nothing installed when the
platform's environment already satisfies them); run ``loopml.packaging.mlflow_convert`` in
the sandbox (``registry.sandbox``), the only place the pickle is loaded; then, in the
platform and without loading anything, upload the package files it wrote to the run
(``loopml-mlflow/<id>``, one folder per registration), complete the package's record, verify
the package against its manifest as any registration does, and settle the version READY or
FAILED with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import uuid
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.core import layout
from loopml.core.clock import utcnow
from loopml.core.errors import LoopmlError, ValidationError
from loopml.core.keys import join_key, validate_key
from loopml.core.refs import validate_model_name
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.registry._verify import MANIFEST_FILE, PACKAGE_FILES
from loopml.registry.env_install import sandboxed_pip
from loopml.registry.sandbox import (
    SCRATCH,
    SandboxLimits,
    SandboxUnavailable,
    interpreter_folders,
    run_sandboxed,
)
from loopml.registry.versions import _ensure_model, _verdict
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import (
    MetadataStore,
    experiments,
    lineage,
    logged_models,
    mlflow_models,
    model_versions,
)
from loopml.train import codeset

log = logging.getLogger("loopml.registry")

PACKAGES_FOLDER = "loopml-mlflow"
_TAIL_LINES = 15
_MAX_REASON = 2000
# The converter reads the model's files itself: MLflow is not needed in its environment.
_NOT_NEEDED = ("mlflow", "mlflow-skinny")


class ConversionFailed(Exception):
    """The MLflow model could not be packaged; the message is the version's reason."""


class _Superseded(Exception):
    """Another server took the conversion over (``mlflow_recovery``): this one settles
    nothing and writes nothing more."""


@dataclass(frozen=True)
class PackagingJob:
    """What the converter needs: the version to settle, the MLflow model's folder in the
    artifact store, and the package record it fills in."""

    project: str
    model: str
    version: int
    run_id: str
    source_prefix: str
    logged_model_id: str
    package_path: str
    actor: str


def packager_id() -> str:
    """This server process, as recorded on the packages it is making (``host:pid``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def accept(
    store: MetadataStore,
    *,
    project: str,
    model_name: str,
    run_id: str,
    mlflow_source: str,
    source_prefix: str,
    description: str = "",
    actor: str,
) -> tuple[ModelVersion, PackagingJob]:
    """Create the next version of ``model_name`` as PACKAGING, naming the package record
    the converter will fill in, and the job that will.

    Raises:
        ValidationError: a bad model name or description.
        NotFoundError: no such project or run.
    """
    validate_model_name(model_name)
    _ensure_model(store, project, model_name, actor)
    path = f"{PACKAGES_FOLDER}/{uuid.uuid4().hex[:16]}"
    summary = {
        "from": "mlflow",
        "mlflow_source": mlflow_source,
        "packager": packager_id(),
        "packager_seen": utcnow().isoformat(),
    }
    with store.session() as session:
        logged_id = logged_models.reserve(session, project, run_id, path=path, summary=summary)
        info = lineage.logged_model(session, logged_id)
        version = model_versions.create(
            session,
            project,
            model_name,
            info,
            description=description,
            actor=actor,
            status=VersionStatus.PACKAGING,
        )
    job = PackagingJob(
        project, model_name, version.version, run_id, source_prefix, logged_id, path, actor
    )
    return version, job


def mlflow_model_source(store: MetadataStore, project: str, model_id: str) -> tuple[str, str]:
    """The source run and the files' folder of MLflow 3 logged model ``model_id``, for a
    registration the converter packages.

    Raises:
        NotFoundError: no such logged model.
        ValidationError: it has no source run (a version needs a run for its package).
    """
    with store.session() as session:
        model = mlflow_models.get(session, project, model_id)
        project_id = experiments.project_id(session, project)
    if model.source_run_id is None:
        raise ValidationError(
            f"logged model {model_id} has no source run, and loopml registers versions from "
            "a run's package: create it with source_run_id (inside mlflow.start_run())",
            details={"model_id": model_id},
        )
    return model.source_run_id, layout.mlflow_model_prefix(project_id, model_id)


def convert(
    store: MetadataStore, artifacts: ArtifactStore, settings: Settings, job: PackagingJob
) -> ModelVersion | None:
    """Run ``job`` to its end: the version READY, or FAILED with the reason; ``None`` when
    another server took the conversion over meanwhile (it settles the version)."""
    status, message = VersionStatus.FAILED, "internal error while packaging; see the server log"
    scratch = Path(tempfile.mkdtemp(prefix="loopml-convert-"))
    try:
        manifest_sha256 = _package(store, artifacts, settings, job, scratch)
        prefix = _run_prefix(store, job)
        status, message = _verdict(artifacts, prefix, manifest_sha256)
    except _Superseded:
        log.warning("version %s/%s is packaged by another server now", job.model, job.version)
        return None
    except SandboxUnavailable as exc:
        message = (
            "the server cannot sandbox the model's environment and converter, so neither ran: "
            f"{exc}"
        )
    except ConversionFailed as exc:
        message = str(exc)
    except LoopmlError as exc:
        message = f"packaging failed: {exc.message}"
    except Exception:
        log.exception("packaging version %s/%s failed unexpectedly", job.model, job.version)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return settle(store, job, status, message)


def settle(
    store: MetadataStore, job: PackagingJob, status: VersionStatus, message: str
) -> ModelVersion:
    """Set the version of ``job`` READY or FAILED with ``message`` (the first verdict stands)."""
    with store.session() as session:
        return model_versions.set_status(
            session,
            job.project,
            job.model,
            job.version,
            status,
            message[:_MAX_REASON],
            actor=job.actor,
        )


def _keep_claim(store: MetadataStore, job: PackagingJob) -> None:
    me = packager_id()
    with store.session() as session:
        mine = logged_models.claim_packaging(
            session, job.logged_model_id, expected=me, packager=me, now=utcnow()
        )
    if not mine:
        raise _Superseded()


def _run_prefix(store: MetadataStore, job: PackagingJob) -> str:
    with store.session() as session:
        info = lineage.logged_model(session, job.logged_model_id)
    return join_key(layout.run_artifacts_prefix(info.project_id, info.run_id), info.path)


def _package(
    store: MetadataStore,
    artifacts: ArtifactStore,
    settings: Settings,
    job: PackagingJob,
    scratch: Path,
) -> str:
    source = scratch / "mlflow-model"
    _copy_in(artifacts, job.source_prefix, source, settings.mlflow.convert_max_bytes)
    python = codeset.environment(
        settings.home / "mlflow-envs",
        _requirements(source),
        lambda line: log.info("%s", line),
        sandboxed_pip(hidden_paths(settings), limits_of(settings)),
    )
    command = [str(python), "-m", "loopml.packaging.mlflow_convert"]
    command += [f"{SCRATCH}/mlflow-model", f"{SCRATCH}/package"]
    result = run_sandboxed(
        command,
        scratch=scratch,
        read_only=interpreter_folders(python),
        hidden=hidden_paths(settings),
        limits=limits_of(settings),
    )
    if result.timed_out:
        raise ConversionFailed(
            f"the converter ran past its limit of {settings.mlflow.convert_timeout_s:g} s "
            f"(mlflow.convert_timeout_s) and was killed: {_tail(result.output)}"
        )
    if result.returncode != 0:
        how = (
            f"was killed by signal {-result.returncode} (a resource limit: CPU time, memory)"
            if result.returncode < 0
            else f"failed (exit status {result.returncode})"
        )
        raise ConversionFailed(
            f"the sandboxed converter {how} packaging the MLflow model (only the sklearn "
            f"flavour is supported): {_tail(result.output)}"
        )
    return _upload(store, artifacts, job, scratch / "package")


def _tail(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL_LINES:])[-1500:] or "(no output)"


def _copy_in(artifacts: ArtifactStore, prefix: str, dest: Path, max_bytes: int) -> None:
    total = 0
    for info in artifacts.list(prefix):
        relative = validate_key(info.key[len(prefix) :].lstrip("/"))
        total += info.size
        if total > max_bytes:
            raise ConversionFailed(
                f"the MLflow model is over {max_bytes} bytes (mlflow.convert_max_bytes)"
            )
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with artifacts.open(info.key) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    if not (dest / "MLmodel").is_file():
        raise ConversionFailed("the MLflow model has no MLmodel file any more")


def _requirements(source: Path) -> str:
    try:
        text = codeset.requirements(source)
    except LoopmlError as exc:
        raise ConversionFailed(f"the MLflow model's environment: {exc.message}") from exc
    kept = []
    for line in text.splitlines():
        name = line.split(";")[0].strip().lower()
        for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", " "):
            name = name.split(sep)[0]
        if name.replace("_", "-") not in _NOT_NEEDED:
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


def hidden_paths(settings: Settings) -> list[Path]:
    """What the sandbox must never show: the home, the SQLite database, the artifact root."""
    hidden = [settings.home]
    url = settings.database_url
    if url.startswith("sqlite:///"):
        hidden.append(Path(url.removeprefix("sqlite:///")))
    root = settings.artifact_root
    if "://" not in root or root.startswith("file://"):
        hidden.append(Path(root.removeprefix("file://")))
    return hidden


def limits_of(settings: Settings) -> SandboxLimits:
    """The sandbox's limits from the ``mlflow.convert_*`` settings."""
    mlflow = settings.mlflow
    return SandboxLimits(
        timeout_s=mlflow.convert_timeout_s,
        cpu_s=mlflow.convert_cpu_s,
        memory_bytes=mlflow.convert_memory_bytes,
        max_processes=mlflow.convert_max_processes,
        max_file_bytes=mlflow.convert_max_bytes,
    )


def _read_regular(path: Path) -> bytes:
    # The sandbox wrote this folder: a symlink there could point at the host's files.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConversionFailed(f"the converter wrote {path.name!r}, which is no plain file")
        return handle.read()


def _upload(store: MetadataStore, artifacts: ArtifactStore, job: PackagingJob, out: Path) -> str:
    if out.is_symlink() or not out.is_dir():
        raise ConversionFailed("the converter wrote no package")
    names = sorted(entry.name for entry in out.iterdir())
    unexpected = [n for n in names if n not in PACKAGE_FILES]
    if unexpected or MANIFEST_FILE not in names:
        raise ConversionFailed(
            f"the converter's package holds {unexpected[:3] or 'no manifest'}: refused"
        )
    manifest = _read_regular(out / MANIFEST_FILE)
    document = _manifest(manifest)
    prefix = _run_prefix(store, job)
    _keep_claim(store, job)  # a server that took over writes the same folder
    for name in names:
        artifacts.write_bytes(join_key(prefix, name), _read_regular(out / name))
    digest = hashlib.sha256(manifest).hexdigest()
    parity = document.get("parity")
    summary = {"parity": parity, "onnx_error": document.get("onnx_error")}
    with store.session() as session:
        logged_models.complete(
            session,
            job.logged_model_id,
            flavor=str(document.get("flavor", ""))[:50],
            format=str(document.get("primary", ""))[:20],
            manifest_sha256=digest,
            signature=document.get("signature") or {},
            summary=summary,
        )
        model_versions.attach_package(
            session, job.project, job.model, job.version, digest, actor=job.actor
        )
    return digest


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ConversionFailed("the converter's manifest is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("signature"), dict):
        raise ConversionFailed("the converter's manifest has no signature")
    return document


class MlflowPackager:
    """The app's converter jobs: ``submit`` queues one on a small thread pool
    (``mlflow.convert_workers``), so the request that registered the version returns at once."""

    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, settings: Settings):
        self._store, self._artifacts, self._settings = store, artifacts, settings
        self._pool = ThreadPoolExecutor(
            max_workers=settings.mlflow.convert_workers, thread_name_prefix="mlflow-convert"
        )

    def submit(self, job: PackagingJob, wait_s: float = 0.0) -> ModelVersion | None:
        """Queue ``job`` (its outcome is the version's status) and wait up to ``wait_s`` for
        it: the version it settled, or ``None`` while it is still PACKAGING then (or was
        taken over, or the packager is closing)."""
        future = self._pool.submit(convert, self._store, self._artifacts, self._settings, job)
        try:
            return future.result(timeout=wait_s) if wait_s > 0 else None
        except (TimeoutError, CancelledError):
            return None

    @property
    def store(self) -> MetadataStore:
        """The metadata store the jobs settle versions in."""
        return self._store

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store the jobs read and write."""
        return self._artifacts

    def close(self) -> None:
        """Stop taking jobs and wait for the running ones (each bounded by its timeout)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
