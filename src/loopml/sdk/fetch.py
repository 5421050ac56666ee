"""``python -m loopml.sdk.fetch``: download a model version's package from the platform,
verified, as the Kubernetes initContainer does before the model server starts::

    python -m loopml.sdk.fetch --url http://loopml.loopml.svc:8765 --project default \\
        --model churn --version 3 --dest /var/lib/loopml/model/package \\
        [--manifest-sha256 HASH] [--hash-file FILE]

The version must be READY. Its manifest is downloaded first and must hash to the SHA-256
the registry records (and to ``--manifest-sha256`` when the deployment pinned one); then
exactly the files the manifest lists are downloaded, each checked for its size and SHA-256
as it streams, into a hidden folder beside ``--dest``. Last, the package is loaded with
``load_model`` (every check the model server makes, and proof that it deserializes), and
only then renamed to ``--dest``: ``--dest`` either holds a verified package or does not
exist. A ``--dest`` already there (a restarted pod) is verified in place instead.
``--hash-file`` receives the verified manifest hash, for a server started without a pinned
one.

Exit status: 0 verified; 2 bad arguments, or a package that fails verification (a hash or
size mismatch, a pinned hash the registry does not record, an unexpected file); 1 anything
else (the platform unreachable, no such version, a version not READY).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pydantic

from loopml.client import Client
from loopml.core.errors import (
    ArtifactIntegrityError,
    ConflictError,
    LoopmlError,
    NotFoundError,
    UnsafeArtifactError,
)
from loopml.core.registry import ModelVersion, VersionStatus
from loopml.packaging import MANIFEST_FILE, ModelManifest, load_model

MAX_MANIFEST_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# A package is a flat folder of a few known names; anything else is refused before it is
# written (load_model refuses it again).
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


def fetch_version(
    client: Client,
    *,
    project: str,
    model: str,
    version: int,
    dest: Path,
    expected_sha256: str | None = None,
) -> ModelVersion:
    """Download the package of ``model`` version ``version`` into ``dest``, verified.

    Args:
        client: the SDK, connected to the platform.
        project: the model's project.
        model: the registered model's name.
        version: its version number.
        dest: the package folder to create (or, when it exists, to verify).
        expected_sha256: the manifest hash the caller pinned; the registry must agree.

    Returns:
        The version, as the registry describes it.

    Raises:
        ArtifactIntegrityError: a file or the manifest does not match its hash, or the
            registry's hash is not the pinned one.
        UnsafeArtifactError: the package holds a file that is not a package file.
        ConflictError: the version is not READY.
        NotFoundError: no such project, model, version or logged model.
    """
    info = client.models.get_version(model, version, project=project)
    if info.status != VersionStatus.READY:
        raise ConflictError(
            f"version {version} of model {model!r} is {info.status}: only READY versions are "
            f"served ({info.status_message or 'no message'})",
            details={"model": model, "version": version},
        )
    recorded = info.manifest_sha256.lower()
    if expected_sha256 is not None and expected_sha256.lower() != recorded:
        raise ArtifactIntegrityError(
            f"the deployment pinned manifest sha256 {expected_sha256.lower()} for {model} "
            f"version {version}, but the registry records {recorded}: refusing to serve a "
            "package other than the one deployed",
            details={"model": model, "version": version},
        )
    if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        dest.rmdir()
    if dest.exists() or dest.is_symlink():
        load_model(dest, manifest_sha256=recorded)
        return info
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    try:
        _download(client, info, staging)
        load_model(staging, manifest_sha256=recorded)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _package_path(client: Client, info: ModelVersion) -> str:
    for logged in client.runs.list_models(info.run_id, project=info.project):
        if logged.id == info.logged_model_id:
            return logged.path.strip("/")
    raise NotFoundError(
        f"run {info.run_id} no longer lists the model that {info.model} version "
        f"{info.version} was registered from",
        details={"run_id": info.run_id, "logged_model_id": info.logged_model_id},
    )


def _download(client: Client, info: ModelVersion, folder: Path) -> None:
    prefix = _package_path(client, info)
    data = b"".join(_chunks(client, info, f"{prefix}/{MANIFEST_FILE}", MAX_MANIFEST_BYTES))
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.manifest_sha256.lower():
        raise ArtifactIntegrityError(
            f"hash mismatch for {MANIFEST_FILE}: the registry records sha256 "
            f"{info.manifest_sha256}, the platform sent {digest}; the stored package is not "
            "the one that was registered",
            details={"file": MANIFEST_FILE},
        )
    try:
        manifest = ModelManifest.model_validate_json(data)
    except pydantic.ValidationError as exc:
        raise ArtifactIntegrityError(
            f"{MANIFEST_FILE} is not a valid loopml manifest: {str(exc)[:300]}",
            details={"file": MANIFEST_FILE},
        ) from exc
    for name, entry in sorted(manifest.files.items()):
        if not _FILE_NAME.fullmatch(name) or name == MANIFEST_FILE:
            raise UnsafeArtifactError(
                f"the manifest lists {name[:120]!r}, which is not a package file name",
                details={"file": name[:120]},
            )
        hashed, size = hashlib.sha256(), 0
        with (folder / name).open("xb") as out:
            for chunk in _chunks(client, info, f"{prefix}/{name}", entry.size):
                hashed.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if size != entry.size or hashed.hexdigest() != entry.sha256:
            raise ArtifactIntegrityError(
                f"hash mismatch for {name}: the manifest records sha256 {entry.sha256} "
                f"({entry.size} bytes), the platform sent {hashed.hexdigest()} ({size} bytes)",
                details={"file": name},
            )
    (folder / MANIFEST_FILE).write_bytes(data)


def _chunks(client: Client, info: ModelVersion, path: str, limit: int) -> Iterator[bytes]:
    """The file's chunks, refusing more than ``limit`` bytes (the manifest's size, or the
    manifest bound) without reading the rest."""
    received = 0
    for chunk in client.runs.iter_artifact(info.run_id, path, project=info.project):
        received += len(chunk)
        if received > limit:
            raise ArtifactIntegrityError(
                f"{path.rsplit('/', 1)[-1]} is larger than the {limit} bytes expected",
                details={"file": path},
            )
        yield chunk


def build_parser() -> argparse.ArgumentParser:
    """The fetch command's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m loopml.sdk.fetch",
        description="Download a model version's package from loopml, verified.",
    )
    parser.add_argument("--url", required=True, help="The platform's base URL.")
    parser.add_argument("--project", default="default", help="The model's project.")
    parser.add_argument("--model", required=True, help="The registered model's name.")
    parser.add_argument("--version", required=True, type=int, help="The version number.")
    parser.add_argument("--dest", required=True, type=Path, help="The package folder to make.")
    parser.add_argument(
        "--manifest-sha256", help="The manifest hash the deployment pinned; must match."
    )
    parser.add_argument("--hash-file", type=Path, help="Write the verified hash here.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds per request.")
    return parser


def main(argv: Sequence[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Fetch and verify; the exit status (``http``: an ``httpx.Client`` to use, for tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.manifest_sha256 is not None and not _SHA256.fullmatch(args.manifest_sha256):
        parser.error("--manifest-sha256 must be 64 hexadecimal characters")
    # With authentication on, the pod's token comes from a Secret (kubernetes.token_secret).
    token = os.environ.get("LOOPML_TOKEN") or None
    client = Client(args.url, token=token, timeout=args.timeout, http=http)
    what = f"{args.project}:{args.model}/{args.version}"
    try:
        info = fetch_version(
            client,
            project=args.project,
            model=args.model,
            version=args.version,
            dest=args.dest,
            expected_sha256=args.manifest_sha256,
        )
    except (ArtifactIntegrityError, UnsafeArtifactError) as exc:
        print(f"loopml.sdk.fetch: REFUSED {what}: {exc.message}", file=sys.stderr)
        return 2
    except LoopmlError as exc:
        print(f"loopml.sdk.fetch: cannot fetch {what}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if http is None:
            client.close()
    if args.hash_file is not None:
        _write_atomically(args.hash_file, f"{info.manifest_sha256.lower()}\n")
    print(
        f"loopml.sdk.fetch: {what} verified (manifest sha256 {info.manifest_sha256.lower()}) "
        f"in {args.dest}",
        file=sys.stderr,
    )
    return 0


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
