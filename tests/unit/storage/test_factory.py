"""open_artifact_store and the backend config models pick and configure a backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from loopml.core.errors import ConfigurationError
from loopml.storage import (
    ArtifactStoreConfig,
    LocalArtifactStore,
    LocalStoreConfig,
    S3ArtifactStore,
    S3StoreConfig,
    open_artifact_store,
)

MiB = 1024 * 1024


def test_plain_path_and_file_uri_open_a_local_store(tmp_path: Path) -> None:
    by_path = open_artifact_store(str(tmp_path / "a"))
    by_uri = open_artifact_store(f"file://{tmp_path / 'b b'}")
    by_localhost = open_artifact_store(f"file://localhost{tmp_path / 'c'}")

    assert isinstance(by_path, LocalArtifactStore)
    assert isinstance(by_uri, LocalArtifactStore)
    assert isinstance(by_localhost, LocalArtifactStore)
    assert (tmp_path / "b b").is_dir()
    assert by_uri.uri == (tmp_path / "b b").resolve().as_uri()


def test_s3_uri_opens_an_s3_store_without_connecting() -> None:
    store = open_artifact_store(
        "s3://my-bucket/team/artifacts/",
        s3_endpoint_url="http://127.0.0.1:1",
        s3_part_size=5 * MiB,
    )

    assert isinstance(store, S3ArtifactStore)
    assert store.uri == "s3://my-bucket/team/artifacts"


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://example.com/x", "ftp://h/x"])
def test_unknown_scheme_lists_the_valid_ones(uri: str) -> None:
    with pytest.raises(ConfigurationError, match="valid schemes: 'file', 's3'"):
        open_artifact_store(uri)


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("", "empty"),
        ("file://evil.example/etc", "must be local"),
        ("s3://Bad_Bucket/x", "Invalid S3 bucket name"),
        ("s3://ab/x", "Invalid S3 bucket name"),
        ("s3://192.168.1.1/x", "Invalid S3 bucket name"),
        ("s3://a..b/x", "Invalid S3 bucket name"),
        ("s3:///x", "Invalid S3 bucket name"),
        ("s3://bucket/../x", "Invalid S3 prefix"),
        ("s3://bucket/.loopml-tmp", "Invalid S3 prefix"),
    ],
)
def test_bad_roots_are_configuration_errors(uri: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        open_artifact_store(uri)


@pytest.mark.parametrize("part_size", [5 * MiB - 1, 5 * 1024 * MiB + 1])
def test_s3_part_size_out_of_range(part_size: int) -> None:
    with pytest.raises(ConfigurationError, match="part size"):
        open_artifact_store("s3://bucket", s3_part_size=part_size)


def test_config_models_build_stores(tmp_path: Path) -> None:
    adapter: TypeAdapter[LocalStoreConfig | S3StoreConfig] = TypeAdapter(ArtifactStoreConfig)

    local = adapter.validate_python({"type": "local", "root": str(tmp_path)})
    s3 = adapter.validate_python({"type": "s3", "bucket": "my-bucket", "prefix": "p"})

    assert isinstance(local.build(), LocalArtifactStore)
    assert isinstance(s3.build(), S3ArtifactStore)


def test_config_models_refuse_unknown_types_and_fields(tmp_path: Path) -> None:
    adapter: TypeAdapter[LocalStoreConfig | S3StoreConfig] = TypeAdapter(ArtifactStoreConfig)

    with pytest.raises(PydanticValidationError, match="'local', 's3'"):
        adapter.validate_python({"type": "gcs", "root": "x"})
    with pytest.raises(PydanticValidationError, match="extra"):
        LocalStoreConfig.model_validate({"type": "local", "root": "x", "bucket": "y"})
    with pytest.raises(PydanticValidationError, match="greater than or equal"):
        S3StoreConfig.model_validate({"type": "s3", "bucket": "b-1", "part_size": 1})
