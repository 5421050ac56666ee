"""Package fixtures and an attacker's tools: rewriting a manifest so its hashes match."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sklearn.linear_model import LogisticRegression

from loopml.packaging import MANIFEST_FILE, ModelPackage, package_model
from tests.unit.packaging.conftest import frame_and_target


def iris_package(dest: Path) -> ModelPackage:
    frame, target = frame_and_target("iris")
    return package_model(LogisticRegression(max_iter=1000).fit(frame, target), dest, sample=frame)


def forge_manifest(folder: Path, **changes: Any) -> str:
    """Re-hash every file in ``folder`` into its manifest, as an attacker who owns it would.

    Returns the new manifest's SHA-256.
    """
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"] = {
        path.name: {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "size": path.stat().st_size,
        }
        for path in sorted(folder.iterdir())
        if path.name != MANIFEST_FILE
    }
    manifest.update(changes)
    data = json.dumps(manifest, sort_keys=True, indent=2).encode()
    (folder / MANIFEST_FILE).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
