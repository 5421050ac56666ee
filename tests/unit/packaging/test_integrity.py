"""Every byte of a package is checked against the manifest before anything is deserialized."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.core.errors import ArtifactIntegrityError, NotFoundError, UnsafeArtifactError
from loopml.packaging import MANIFEST_FILE, load_model
from tests.unit.packaging._helpers import iris_package


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_intact_package_loads(tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    assert load_model(package.path, manifest_sha256=package.manifest_sha256).format == "onnx"


@pytest.mark.parametrize(
    "name", ["model.onnx", "model.skops", "input_example.json", "sample.parquet"]
)
def test_one_changed_byte_is_refused(name: str, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    _flip_byte(package.path / name, offset=10)

    with pytest.raises(ArtifactIntegrityError, match=rf"hash mismatch for {name}") as info:
        load_model(package.path, manifest_sha256=package.manifest_sha256)
    assert info.value.status == 409
    assert info.value.code == "integrity_error"


def test_changed_manifest_is_refused_against_the_registry_hash(tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    manifest = package.path / MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace('"tolerance": 0.0001', '"tolerance": 0.5'))

    with pytest.raises(ArtifactIntegrityError, match=rf"hash mismatch for {MANIFEST_FILE}"):
        load_model(package.path, manifest_sha256=package.manifest_sha256)


def test_deleted_file_is_refused(tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    (package.path / "model.skops").unlink()

    with pytest.raises(ArtifactIntegrityError, match=r"model\.skops is listed in the manifest"):
        load_model(package.path, manifest_sha256=package.manifest_sha256)


def test_symlinked_file_is_refused(tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    target = tmp_path / "elsewhere.onnx"
    (package.path / "model.onnx").rename(target)
    (package.path / "model.onnx").symlink_to(target)

    with pytest.raises(UnsafeArtifactError, match="not a regular file"):
        load_model(package.path, manifest_sha256=package.manifest_sha256)


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib", "weights.bin", "notes.txt"])
def test_unlisted_extra_file_is_refused(name: str, tmp_path: Path) -> None:
    package = iris_package(tmp_path / "pkg")
    (package.path / name).write_bytes(b"\x80\x04N.")

    with pytest.raises(UnsafeArtifactError, match="plain pickle is never loaded"):
        load_model(package.path, manifest_sha256=package.manifest_sha256)


def test_missing_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_model(tmp_path / "nothing")
