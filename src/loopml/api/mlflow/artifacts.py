"""MLflow's proxied artifacts (``/api/2.0/mlflow-artifacts/artifacts/<path>``) over loopml's
artifact store, through the same key validation as loopml's own artifact routes.

A run's ``artifact_uri`` is ``mlflow-artifacts:/runs/<run_id>`` and an MLflow 3 logged
model's ``mlflow-artifacts:/models/<model_id>``, so every path MLflow's client sends starts
with one of those; the rest is a key in that folder (``core.keys.validate_key``: no ``..``,
no absolute paths, no control characters).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from loopml.core.errors import NotFoundError
from loopml.core.keys import join_key, validate_key, validate_prefix
from loopml.core.types import Artifact
from loopml.faces.context import AppContext
from loopml.train.tracking import artifacts as run_artifacts

_UPLOAD_PATH = re.compile(
    r"^(/mlflow/projects/[^/]+)?/(api|ajax-api)/2\.0/mlflow-artifacts/artifacts/"
)


def _root(ctx: AppContext, project: str, path: str) -> tuple[str, str]:
    """``runs/<run_id>/<key>`` or ``models/<model_id>/<key>`` as the owner's folder in the
    artifact store and the key inside it (empty for the folder itself)."""
    parts = path.strip("/").split("/", 2)
    if len(parts) < 2 or parts[0] not in ("runs", "models") or len(parts[1]) != 32:
        raise NotFoundError(
            f"no artifact location {path[:120]!r}: expected runs/<run_id>/<path> or "
            "models/<model_id>/<path>, as in an artifact_uri",
            details={"path": path[:120]},
        )
    key = parts[2] if len(parts) == 3 else ""
    if parts[0] == "runs":
        return run_artifacts.run_root(ctx.store, project, parts[1]), key
    return ctx.mlflow.logged_model_root(project, parts[1]), key


def upload(ctx: AppContext, project: str, path: str, chunks: Iterable[bytes]) -> None:
    """Stream a file into a run's or a logged model's folder (atomic, hashed while written)."""
    root, key = _root(ctx, project, path)
    ctx.artifacts.write(join_key(root, validate_key(key)), chunks)


def download(ctx: AppContext, project: str, path: str) -> tuple[Artifact, Iterator[bytes]]:
    """A file and its content as lazily read chunks."""
    root, key = _root(ctx, project, path)
    full = join_key(root, validate_key(key))
    obj = ctx.artifacts.stat(full)
    info = Artifact(key=key, size=obj.size, modified=obj.modified, sha256=obj.sha256)
    return info, ctx.artifacts.iter_bytes(full)


def list_folder(ctx: AppContext, project: str, path: str) -> dict[str, Any]:
    """The files and folders directly inside a folder, as MLflow's ``FileInfo`` list (paths
    relative to the folder listed)."""
    root, key = _root(ctx, project, path)
    folder = validate_prefix(key).rstrip("/")
    base = join_key(root, folder) if folder else root
    files: list[dict[str, Any]] = []
    folders: set[str] = set()
    for obj in ctx.artifacts.list(base):
        rest = obj.key[len(base) + 1 :]
        head, slash, _ = rest.partition("/")
        if slash:
            if head not in folders:
                folders.add(head)
                files.append({"path": head, "is_dir": True})
        else:
            files.append({"path": head, "is_dir": False, "file_size": obj.size})
    return {"files": sorted(files, key=lambda f: f["path"])}


def delete(ctx: AppContext, project: str, path: str) -> dict[str, Any]:
    """Delete a file, or everything under a folder."""
    root, key = _root(ctx, project, path)
    if not key:
        removed = ctx.artifacts.delete_prefix(root)
    else:
        full = join_key(root, validate_key(key))
        if ctx.artifacts.exists(full):
            ctx.artifacts.delete(full)
            return {}
        removed = ctx.artifacts.delete_prefix(full)
    if not removed:
        raise NotFoundError(f"no artifact at {path[:120]!r}", details={"path": path[:120]})
    return {}


def is_upload_path(path: str) -> bool:
    """Whether ``path`` is an MLflow artifact upload (raw body, the upload size limit), at the
    root or under a project's tracking URI (``/mlflow/projects/<project>/...``)."""
    return _UPLOAD_PATH.match(path) is not None
