"""Runs, run inputs and logged model packages written straight through the ORM and the
artifact store, so registry tests do not depend on the tracking repository."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from loopml.core import layout
from loopml.core.clock import utcnow
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from loopml.store.orm import ExperimentRow, LoggedModelRow, RunInputRow, RunRow
from loopml.store.project_lookup import project_row

# An ONNX ModelProto opens with its ir_version field (0x08): the registry checks that.
MODEL_FILES = {
    "model.onnx": b"\x08\x08" + b"onnx-bytes " * 500,
    "input_example.json": b'{"x": [1]}',
}


@dataclass(frozen=True)
class Run:
    id: str
    project: str
    project_id: str

    def package_prefix(self, path: str = "model") -> str:
        return f"{layout.run_artifacts_prefix(self.project_id, self.id)}/{path}"


def make_run(
    store: MetadataStore, project: str = "default", *, inputs: tuple[tuple[str, str], ...] = ()
) -> Run:
    """A FINISHED run in ``project`` (its experiment created on first use) with ``inputs``."""
    with store.session() as session:
        proj = project_row(session, project)
        experiment = session.query(ExperimentRow).filter_by(project_id=proj.id).first()
        if experiment is None:
            experiment = ExperimentRow(project_id=proj.id, name="exp", description="")
            session.add(experiment)
            session.flush()
        now = utcnow()
        run = RunRow(
            project_id=proj.id,
            experiment_id=experiment.id,
            name="run",
            status="FINISHED",
            start_time=now,
            end_time=now,
            heartbeat_at=now,
            heartbeat_timeout_s=60,
            code_version={},
            actor="test",
        )
        session.add(run)
        session.flush()
        session.add_all(RunInputRow(run_id=run.id, kind=k, ref=r, details={}) for k, r in inputs)
        return Run(run.id, project, proj.id)


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    entries = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in files.items()
    }
    document = {"format_version": 1, "flavor": "sklearn", "primary": "onnx", "files": entries}
    return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()


def log_model(
    store: MetadataStore,
    artifacts: ArtifactStore,
    run: Run,
    *,
    path: str = "model",
    files: dict[str, bytes] | None = None,
    write_manifest: bool = True,
    manifest: bytes | None = None,
    signature: dict[str, Any] | None = None,
) -> str:
    """Write a package (files, then its manifest, or ``manifest`` as given) and its
    logged_models row (with ``signature`` as recorded); returns the manifest's SHA-256."""
    files = MODEL_FILES if files is None else files
    prefix = run.package_prefix(path)
    for name, data in files.items():
        artifacts.write_bytes(f"{prefix}/{name}", data)
    manifest = manifest or manifest_bytes(files)
    if write_manifest:
        artifacts.write_bytes(f"{prefix}/loopml-model.json", manifest)
    sha = hashlib.sha256(manifest).hexdigest()
    with store.session() as session:
        session.add(
            LoggedModelRow(
                run_id=run.id,
                path=path,
                flavor="sklearn",
                format="onnx",
                manifest_sha256=sha,
                signature=signature or {},
                summary={},
            )
        )
    return sha
