"""RELIABILITY 7: a model file whose loading runs ``touch CANARY`` must never be executed.

Each attack also forges the manifest so that its hashes match the malicious file, as an
attacker who controls the package folder can; the refusal must come from the format rules.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import skops.io as sio

from loopml.core.errors import UnsafeArtifactError
from loopml.packaging import load_model
from tests.unit.packaging._helpers import forge_manifest, iris_package


class _Payload:
    def __init__(self, canary: Path) -> None:
        self.command = f"touch {canary}"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def _evil_pickle(canary: Path) -> bytes:
    return pickle.dumps(_Payload(canary))


def _evil_skops(canary: Path) -> bytes:
    """A well-formed skops zip whose schema calls ``os.system`` while loading."""
    command = {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(f"touch {canary}"),
        "is_json": True,
        "__id__": 3,
    }
    schema = {
        "__class__": os.system.__name__,
        "__module__": os.system.__module__,
        "__loader__": "ConstructorFromReduceNode",
        "__id__": 1,
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "__id__": 2,
            "content": [command],
        },
        "protocol": 2,
        "_skops_version": importlib.metadata.version("skops"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "CANARY"


def test_payloads_are_live(canary: Path) -> None:
    """Without loopml's checks both payloads do run: the refusals below are meaningful."""
    pickle.loads(_evil_pickle(canary))
    assert canary.exists()
    canary.unlink()
    data = _evil_skops(canary)
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert canary.exists()


def test_skops_with_untrusted_type_is_refused(canary: Path, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    (package.path / "model.skops").write_bytes(_evil_skops(canary))
    sha = forge_manifest(package.path)

    with pytest.raises(UnsafeArtifactError, match=r"not in the manifest's trusted list.*system"):
        load_model(package.path, manifest_sha256=sha, prefer="skops")
    assert not canary.exists()


def test_skops_with_forged_trusted_list_is_refused(canary: Path, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    (package.path / "model.skops").write_bytes(_evil_skops(canary))
    evil = f"{os.system.__module__}.{os.system.__name__}"
    sha = forge_manifest(package.path, trusted_types=[evil], primary="skops")

    with pytest.raises(UnsafeArtifactError, match=rf"refusing untrusted skops types: {evil}"):
        load_model(package.path, manifest_sha256=sha)
    assert not canary.exists()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("builtins.eval", "not from"),
        ("numpy.asarray", "not a class"),
        ("numpy.load", "deny list"),
        ("numpy.memmap", "deny list"),
        ("sklearn.NoSuchThing", "does not exist"),
    ],
)
def test_trusted_list_policy(name: str, reason: str, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    sha = forge_manifest(package.path, trusted_types=[name], primary="skops")

    with pytest.raises(UnsafeArtifactError, match=reason):
        load_model(package.path, manifest_sha256=sha)


@pytest.mark.parametrize("compress", [False, True], ids=["pickle", "gzip-pickle"])
def test_pickle_renamed_skops_is_refused(compress: bool, canary: Path, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    payload = _evil_pickle(canary)
    (package.path / "model.skops").write_bytes(gzip.compress(payload) if compress else payload)
    sha = forge_manifest(package.path, primary="skops")

    with pytest.raises(UnsafeArtifactError, match=r"not a valid skops zip.*never loaded"):
        load_model(package.path, manifest_sha256=sha)
    assert not canary.exists()


@pytest.mark.parametrize("name", ["model.pkl", "model.pkl.gz", "model.bin", "model.joblib"])
def test_pickle_files_are_refused_even_when_listed(name: str, canary: Path, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    payload = _evil_pickle(canary)
    (package.path / name).write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)
    sha = forge_manifest(package.path)

    with pytest.raises(UnsafeArtifactError, match=rf"{name}.*plain pickle is never loaded"):
        load_model(package.path, manifest_sha256=sha)
    assert not canary.exists()


def test_pickle_as_onnx_is_refused(canary: Path, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    (package.path / "model.onnx").write_bytes(_evil_pickle(canary))
    sha = forge_manifest(package.path)

    with pytest.raises(UnsafeArtifactError, match="not a valid ONNX model"):
        load_model(package.path, manifest_sha256=sha)
    assert not canary.exists()
