"""``load_model``: verify every byte of a package, then deserialize it without pickle."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pydantic

from loopml.core.errors import (
    ArtifactIntegrityError,
    NotFoundError,
    UnsafeArtifactError,
    ValidationError,
)
from loopml.packaging._manifest import (
    INPUT_EXAMPLE_FILE,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    ONNX_FILE,
    PACKAGE_FILES,
    SAMPLE_FILE,
    SKOPS_FILE,
    ModelManifest,
    sha256_hex,
)
from loopml.packaging._signature import model_frame, prepare_frame

if TYPE_CHECKING:
    import pandas as pd
_NO_PICKLE = (
    "plain pickle is never loaded: a package holds only "
    f"{sorted(PACKAGE_FILES)}; re-package the model with loopml.packaging"
)


def _read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file, refusing symlinks (no following them out of the package)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise ArtifactIntegrityError(f"{path.name} is listed in the manifest but missing") from exc
    except OSError as exc:
        raise UnsafeArtifactError(f"{path.name} is not a regular file: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnsafeArtifactError(f"{path.name} is not a regular file")
        data = handle.read() if limit is None else handle.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ValidationError(f"{path.name} is larger than {limit} bytes")
    return data


def _check_listing(folder: Path, manifest: ModelManifest) -> None:
    present = {entry.name for entry in folder.iterdir()}
    unknown = sorted(present - PACKAGE_FILES)
    listed = set(manifest.files)
    if unknown or not listed <= PACKAGE_FILES - {MANIFEST_FILE}:
        names = unknown or sorted(listed - PACKAGE_FILES)
        raise UnsafeArtifactError(
            f"refusing package {folder}: unexpected files {names}; {_NO_PICKLE}",
            details={"files": names},
        )
    unlisted = sorted(present - listed - {MANIFEST_FILE})
    if unlisted:
        raise ArtifactIntegrityError(
            f"{unlisted} in {folder} are not in the manifest; the package was changed after "
            "it was written",
            details={"files": unlisted},
        )


def _verified_files(folder: Path, manifest: ModelManifest) -> dict[str, bytes]:
    """Every listed file's bytes, each checked against its recorded size and SHA-256.

    The bytes are deserialized from memory afterwards, so a file swapped after the check
    is never the one loaded.
    """
    blobs: dict[str, bytes] = {}
    for name, entry in sorted(manifest.files.items()):
        data = _read_regular(folder / name)
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise ArtifactIntegrityError(
                f"hash mismatch for {name}: the manifest records sha256 {entry.sha256} "
                f"({entry.size} bytes), the file has {sha256_hex(data)} ({len(data)} bytes)",
                details={"file": name},
            )
        blobs[name] = data
    return blobs


def _read_manifest(folder: Path, manifest_sha256: str | None) -> ModelManifest:
    data = _read_regular(folder / MANIFEST_FILE, MAX_MANIFEST_BYTES)
    if manifest_sha256 is not None and sha256_hex(data) != manifest_sha256.lower():
        raise ArtifactIntegrityError(
            f"hash mismatch for {MANIFEST_FILE}: expected sha256 {manifest_sha256}, the file "
            f"has {sha256_hex(data)}; the package is not the one that was registered",
            details={"file": MANIFEST_FILE},
        )
    try:
        return ModelManifest.model_validate_json(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(f"{MANIFEST_FILE} is not a valid loopml manifest: {exc}") from exc


class LoadedModel:
    """A verified, deserialized model that checks its inputs against its signature.

    Attributes:
        manifest: the package's manifest.
        format: the format that was loaded, ``onnx`` or ``skops``.
    """

    def __init__(
        self,
        manifest: ModelManifest,
        format: Literal["onnx", "skops"],
        model: Any,
        samples: dict[str, bytes] | None = None,
    ):
        self.manifest = manifest
        self.format: Literal["onnx", "skops"] = format
        self._model = model
        self._samples = samples or {}

    def sample(self) -> pd.DataFrame | None:
        """The rows the model was packaged with (verified with the package): ``sample.parquet``
        (up to 1,000 rows), else the input example (5 rows); ``None`` when it has neither."""
        if SAMPLE_FILE in self._samples:
            import pyarrow as pa
            import pyarrow.parquet as pq

            return pq.read_table(pa.BufferReader(self._samples[SAMPLE_FILE])).to_pandas()
        if INPUT_EXAMPLE_FILE in self._samples:
            import pandas as pd

            try:
                return pd.DataFrame.from_records(json.loads(self._samples[INPUT_EXAMPLE_FILE]))
            except (ValueError, TypeError):
                return None
        return None

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (``None`` for a skops model): a server runs it once for
        labels and probabilities together, where ``predict``/``predict_proba`` run it twice."""
        return self._model if self.format == "onnx" else None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels (classification) or values (regression), one per row of ``frame``.

        Raises:
            ValidationError: a signature column is missing or cannot be cast to its type.
        """
        prepared = prepare_frame(frame, self.manifest.signature)
        if self.format == "skops":
            return np.asarray(self._model.predict(model_frame(prepared, self.manifest.signature)))
        from loopml.packaging.onnx_export import run_onnx

        values = run_onnx(self._model, prepared, self.manifest.signature)[0].ravel()
        return values if self.manifest.signature.task == "classification" else values.astype(float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities, ``[rows, classes]`` in ``signature.classes`` order.

        Raises:
            ValidationError: the model is a regressor, or the frame does not fit the signature.
        """
        if self.manifest.signature.task != "classification":
            raise ValidationError("predict_proba needs a classifier; this model is a regressor")
        prepared = prepare_frame(frame, self.manifest.signature)
        if self.format == "skops":
            native = model_frame(prepared, self.manifest.signature)
            return np.asarray(self._model.predict_proba(native), dtype=np.float64)
        from loopml.packaging.onnx_export import run_onnx

        return run_onnx(self._model, prepared, self.manifest.signature)[1].astype(np.float64)


def load_model(
    path: Path,
    *,
    manifest_sha256: str | None = None,
    prefer: Literal["primary", "onnx", "skops"] = "primary",
    single_thread: bool = False,
) -> LoadedModel:
    """Verify a package and load its model, never through pickle.

    Args:
        path: the package folder.
        manifest_sha256: the manifest's SHA-256 as the registry recorded it. Without it the
            package is only checked against itself, so pass it whenever there is a record.
        prefer: ``primary`` loads the manifest's serving format; ``onnx``/``skops`` force one.
        single_thread: an ONNX session with one non-spinning thread, as a server wants
            (see ``onnx_session``).

    Returns:
        The loaded model.

    Raises:
        ArtifactIntegrityError: the manifest or a file does not match its recorded hash, or
            a file is missing or unlisted.
        UnsafeArtifactError: the package holds a file that is not a package file (a
            pickle), a skops type outside the trusted list or the policy, or unsafe ONNX.
        NotFoundError: no package at ``path``, or the preferred format is absent.
    """
    folder = Path(path)
    if not folder.is_dir() or folder.is_symlink():
        raise NotFoundError(f"no model package folder at {folder}")
    manifest = _read_manifest(folder, manifest_sha256)
    _check_listing(folder, manifest)
    blobs = _verified_files(folder, manifest)
    samples = {k: blobs[k] for k in (SAMPLE_FILE, INPUT_EXAMPLE_FILE) if k in blobs}
    chosen = manifest.primary if prefer == "primary" else prefer
    name = ONNX_FILE if chosen == "onnx" else SKOPS_FILE
    if name not in blobs:
        raise NotFoundError(f"the package at {folder} has no {name}")
    if chosen == "onnx" and manifest.flavor == "transformers":
        from loopml.packaging.text import text_session

        session = text_session(blobs, manifest.signature, single_thread=single_thread)
        return LoadedModel(manifest, "onnx", session, samples)
    if chosen == "onnx":
        from loopml.packaging.onnx_export import onnx_session

        session = onnx_session(blobs[name], single_thread=single_thread)
        return LoadedModel(manifest, "onnx", session, samples)
    from loopml.packaging import _skops

    model = _skops.load(blobs[name], manifest.trusted_types)
    return LoadedModel(manifest, "skops", model, samples)
