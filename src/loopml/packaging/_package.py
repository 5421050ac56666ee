"""``package_model``: write a verified, pickle-free package folder."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.core.errors import ConflictError, ValidationError
from loopml.packaging._manifest import (
    DEFAULT_TOLERANCE,
    INPUT_EXAMPLE_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    SAMPLE_FILE,
    SKOPS_FILE,
    FileEntry,
    ModelManifest,
    ModelPackage,
    ParityReport,
    Signature,
    sha256_hex,
)
from loopml.packaging._signature import (
    check_supported,
    flavor_of,
    infer_signature,
    model_frame,
    prepare_frame,
)

_LIBRARIES = ("scikit-learn", "lightgbm", "onnx", "onnxruntime", "skl2onnx", "skops")
_EXAMPLE_ROWS = 5
# Enough for a drift reference (at most 1,000 rows: the exact KS and chi-square tests), small
# enough to keep a package light (about 8 bytes a numeric value before compression).
SAMPLE_ROWS = 1000


def _library_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _prepare_dest(dest: Path) -> bool:
    """Make ``dest`` ready; ``True`` if it was created here (so a failure removes it)."""
    if dest.exists():
        if not dest.is_dir() or dest.is_symlink() or any(dest.iterdir()):
            raise ConflictError(f"{dest} must be an empty folder or absent to package a model")
        return False
    dest.mkdir(parents=True)
    return True


def _try_onnx(
    model: Any, frame: pd.DataFrame, signature: Signature, tolerance: float
) -> tuple[bytes | None, ParityReport | None, str | None]:
    from loopml.packaging import onnx_export

    try:
        data = onnx_export.export_onnx(model, signature)
        session = onnx_export.onnx_session(data)
        report = onnx_export.parity(model, session, frame, signature, tolerance)
    except Exception as exc:  # any converter/runtime failure means "serve with skops"
        return None, None, f"{type(exc).__name__}: {exc}"[:2000]
    return data, report, None


def _check_skops_roundtrip(
    model: Any, data: bytes, trusted: list[str], frame: pd.DataFrame
) -> None:
    from loopml.packaging import _skops

    reloaded = _skops.load(data, trusted)
    rows = frame.iloc[:100]
    got, want = np.asarray(reloaded.predict(rows)), np.asarray(model.predict(rows))
    # Same parameters, but memory layout can change BLAS summation order in the last bit.
    same = (
        np.allclose(got, want, rtol=1e-9, atol=0.0, equal_nan=True)
        if want.dtype.kind == "f"
        else np.array_equal(got, want)
    )
    if not same:
        raise ValidationError("the skops copy of the model predicts differently from the model")


def _sample_parquet(frame: pd.DataFrame) -> bytes | None:
    """Up to ``SAMPLE_ROWS`` rows of the prepared sample (drawn with a fixed seed, so a sorted
    sample is not cut to its first rows) as Parquet; ``None`` when Arrow cannot hold a column
    (the package stands without it: only the monitor's reference uses it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = frame if len(frame) <= SAMPLE_ROWS else frame.sample(n=SAMPLE_ROWS, random_state=0)
    try:
        table = pa.Table.from_pandas(rows, preserve_index=False).replace_schema_metadata(None)
    except (pa.ArrowException, ValueError, TypeError):
        return None
    out = pa.BufferOutputStream()
    pq.write_table(table, out, compression="zstd")
    return bytes(out.getvalue().to_pybytes())


def _write(dest: Path, name: str, data: bytes, files: dict[str, FileEntry]) -> None:
    (dest / name).write_bytes(data)
    files[name] = FileEntry(sha256=sha256_hex(data), size=len(data))


def package_model(
    model: Any,
    dest: Path,
    *,
    sample: pd.DataFrame,
    signature: Signature | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ModelPackage:
    """Package a fitted model as ONNX (when it exports with parity) plus skops, with a manifest.

    Writes ``model.onnx`` (if export works), ``model.skops`` (always), ``input_example.json``
    (the first rows of ``sample``) and, last, the manifest, which records every file's
    SHA-256. ONNX is the primary (serving) format when the export reproduces the native
    model on ``sample`` within ``tolerance``; otherwise skops is, and the reason is recorded.

    Args:
        model: a fitted scikit-learn classifier/regressor (or Pipeline) or LightGBM model.
        dest: an empty or absent folder to write the package into.
        sample: input rows for signature inference, the parity check and the input example
            (up to 1000 rows are compared).
        signature: the signature to record; inferred from ``model`` and ``sample`` if omitted.
        tolerance: the largest parity difference accepted (see ``ParityReport``).

    Returns:
        The written package, with the manifest's SHA-256 for the registry to store.

    Raises:
        ValidationError: an unsupported or unfitted model, a bad sample, or a model whose
            skops copy cannot be made safely.
        ConflictError: ``dest`` exists and is not an empty folder.
    """
    check_supported(model)
    signature = signature or infer_signature(model, sample)
    frame = prepare_frame(sample, signature)
    from loopml.packaging import _skops

    skops_bytes, trusted = _skops.dump(model)
    _check_skops_roundtrip(model, skops_bytes, trusted, model_frame(frame, signature))
    onnx_bytes, report, onnx_error = _try_onnx(model, frame, signature, tolerance)
    dest = Path(dest)
    created = _prepare_dest(dest)
    files: dict[str, FileEntry] = {}
    try:
        if onnx_bytes is not None:
            _write(dest, ONNX_FILE, onnx_bytes, files)
        _write(dest, SKOPS_FILE, skops_bytes, files)
        example = sample.iloc[:_EXAMPLE_ROWS][[c.name for c in signature.inputs]]
        # ISO dates, as a caller sends them (pandas writes epoch milliseconds by default).
        text = example.to_json(orient="records", date_format="iso")
        _write(dest, INPUT_EXAMPLE_FILE, text.encode(), files)
        sample_bytes = _sample_parquet(frame)
        if sample_bytes is not None:
            _write(dest, SAMPLE_FILE, sample_bytes, files)
        manifest = ModelManifest(
            flavor=flavor_of(model),
            primary="onnx" if report is not None and report.passed else "skops",
            files=dict(sorted(files.items())),
            signature=signature,
            parity=report,
            onnx_error=onnx_error,
            trusted_types=trusted,
            library_versions=_library_versions(),
        )
        manifest_bytes = manifest.to_bytes()
        (dest / MANIFEST_FILE).write_bytes(manifest_bytes)
    except BaseException:
        for name in files:
            (dest / name).unlink(missing_ok=True)
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return ModelPackage(path=dest, manifest=manifest, manifest_sha256=sha256_hex(manifest_bytes))
