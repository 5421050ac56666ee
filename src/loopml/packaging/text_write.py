"""Writing a text package folder (see ``loopml.packaging.text`` for its layout)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from loopml.packaging._manifest import (
    INPUT_EXAMPLE_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    TEXT_CONFIG_FILE,
    TOKENIZER_FILE,
    FileEntry,
    ModelManifest,
    ModelPackage,
    ParityReport,
    Signature,
    sha256_hex,
)
from loopml.packaging._package import _prepare_dest, _write
from loopml.packaging.text import TextConfig


def write_text_package(
    dest: Path,
    *,
    onnx_bytes: bytes,
    tokenizer_json: str,
    config: TextConfig,
    signature: Signature,
    parity: ParityReport,
    example: Sequence[str],
    library_versions: dict[str, str],
) -> ModelPackage:
    """Write the files, then the manifest (last) into the empty or absent folder ``dest``.

    Raises:
        ConflictError: ``dest`` exists and is not an empty folder.
    """
    dest = Path(dest)
    created = _prepare_dest(dest)
    files: dict[str, FileEntry] = {}
    try:
        _write(dest, ONNX_FILE, onnx_bytes, files)
        _write(dest, TOKENIZER_FILE, tokenizer_json.encode(), files)
        _write(dest, TEXT_CONFIG_FILE, config.to_bytes(), files)
        records = [{config.text_column: text} for text in example]
        _write(dest, INPUT_EXAMPLE_FILE, json.dumps(records).encode(), files)
        manifest = ModelManifest(
            flavor="transformers",
            primary="onnx",
            files=dict(sorted(files.items())),
            signature=signature,
            parity=parity,
            trusted_types=[],
            library_versions=library_versions,
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
