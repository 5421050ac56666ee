"""register_version: READY only when every file is present and matches its manifest."""

from __future__ import annotations

import pickle

import pytest

from loopml.core.errors import NotFoundError
from loopml.core.registry import VersionStatus
from loopml.registry import register_version, resolve
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore, events, models
from tests.tracking_rows import Run, log_model, make_run, manifest_bytes


def _register(store: MetadataStore, artifacts: ArtifactStore, run: Run, path: str = "model"):  # type: ignore[no-untyped-def]
    return register_version(
        store,
        artifacts,
        project="default",
        model_name="churn",
        run_id=run.id,
        path=path,
        actor="ada",
    )


def test_register_verifies_and_marks_ready(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    sha = log_model(store, artifacts, run)
    version = _register(store, artifacts, run)
    assert (version.version, version.status, version.status_message) == (1, VersionStatus.READY, "")
    assert version.manifest_sha256 == sha
    assert version.run_id == run.id
    assert resolve(store, "default", "churn").id == version.id
    with store.session() as session:
        assert models.get(session, "default", "churn").latest_version == 1
        feed = [e.type for e in events.list_(session, type="model.*").items]
    assert feed == ["model.created", "model.version.registered", "model.version.ready"]


def test_second_registration_reuses_the_model(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    assert _register(store, artifacts, run).version == 1
    assert _register(store, artifacts, run).version == 2


def test_tampered_file_fails_naming_it(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    key = f"{run.package_prefix()}/model.onnx"
    original = artifacts.read_bytes(key)
    artifacts.write_bytes(key, bytes([original[0] ^ 1]) + original[1:])  # same size
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "'model.onnx'" in version.status_message
    assert "SHA-256" in version.status_message
    with pytest.raises(NotFoundError, match="no READY version"):
        resolve(store, "default", "churn")


def test_truncated_file_fails_naming_it(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    artifacts.write_bytes(f"{run.package_prefix()}/input_example.json", b"{}")
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "'input_example.json' is 2 bytes" in version.status_message


def test_missing_file_fails_naming_it(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    artifacts.delete(f"{run.package_prefix()}/model.onnx")
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "file 'model.onnx' listed in the manifest is missing" in version.status_message


def test_missing_manifest_fails(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    log_model(store, artifacts, run, write_manifest=False)
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "manifest loopml-model.json is missing" in version.status_message


def test_replaced_manifest_fails(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    # A consistent package whose manifest is not the one the run recorded.
    key = f"{run.package_prefix()}/loopml-model.json"
    artifacts.write_bytes(key, artifacts.read_bytes(key) + b" ")
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "the run recorded" in version.status_message


def test_unlisted_file_fails(store: MetadataStore, artifacts: ArtifactStore) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    artifacts.write_bytes(f"{run.package_prefix()}/model.pkl", b"cos\nsystem\n")
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "'model.pkl' is in the package but not in its manifest" in version.status_message


def test_manifest_naming_files_outside_the_package_fails(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    run = make_run(store)
    hostile = manifest_bytes({"../../../../../../etc/passwd": b"x"})
    log_model(store, artifacts, run, files={}, manifest=hostile)
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED
    assert "invalid file name" in version.status_message


def test_unknown_run_or_path_is_not_found_and_creates_nothing(
    store: MetadataStore, artifacts: ArtifactStore
) -> None:
    run = make_run(store)
    with pytest.raises(NotFoundError, match="logged no model at path 'model'"):
        _register(store, artifacts, run)
    with pytest.raises(NotFoundError, match="not found in project 'default'"):
        register_version(
            store, artifacts, project="default", model_name="churn", run_id="f" * 32, actor="a"
        )
    with store.session() as session:
        assert models.list_(session, "default").items == []


class _BrokenStore:
    """An artifact store whose reads fail midway, like a dropped connection."""

    def __init__(self, inner: ArtifactStore, error: BaseException) -> None:
        self._inner = inner
        self._error = error

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20):  # type: ignore[no-untyped-def]
        raise self._error


@pytest.mark.parametrize(
    ("error", "message"),
    [(RuntimeError("boom"), "internal error"), (KeyboardInterrupt(), "interrupted")],
)
def test_a_registration_that_dies_midway_is_never_ready(
    store: MetadataStore, artifacts: ArtifactStore, error: BaseException, message: str
) -> None:
    run = make_run(store)
    log_model(store, artifacts, run)
    broken = _BrokenStore(artifacts, error)
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            _register(store, broken, run)  # type: ignore[arg-type]
        version = resolve(store, "default", "churn/1")
    else:
        version = _register(store, broken, run)  # type: ignore[arg-type]
    assert version.status == VersionStatus.FAILED
    assert message in version.status_message


_PICKLE = pickle.dumps({"a": 1}, protocol=4)
_PICKLE_0 = b"cos\nsystem\n(S'echo pwned'\ntR."


@pytest.mark.parametrize(
    ("files", "message"),
    [
        # A pickle listed in the manifest under its own name, with the right hash.
        ({"model.pkl": _PICKLE}, "manifest lists 'model.pkl'"),
        ({"model.onnx": b"\x08\x07", "weights.joblib": _PICKLE}, "manifest lists 'weights"),
        # A pickle disguised under a package name, with the right hash.
        ({"model.onnx": _PICKLE}, "'model.onnx' is a pickle"),
        ({"model.skops": _PICKLE}, "'model.skops' is a pickle"),
        ({"model.onnx": b"\x08\x07", "input_example.json": _PICKLE}, "is a pickle"),
        ({"model.onnx": _PICKLE_0}, "'model.onnx' is not an ONNX model"),
        ({"model.skops": _PICKLE_0}, "'model.skops' is not a skops (zip) file"),
        ({"model.onnx": b"\x08\x07", "input_example.json": _PICKLE_0}, "is not JSON"),
        ({"model.onnx": b"\x08\x07", "sample.parquet": _PICKLE}, "is a pickle"),
        ({"model.onnx": b"\x08\x07", "sample.parquet": _PICKLE_0}, "is not a Parquet file"),
    ],
)
def test_a_pickle_in_any_disguise_fails_at_registration(
    store: MetadataStore, artifacts: ArtifactStore, files: dict[str, bytes], message: str
) -> None:
    run = make_run(store)
    log_model(store, artifacts, run, files=files)
    version = _register(store, artifacts, run)
    assert version.status == VersionStatus.FAILED, files
    assert message in version.status_message
    assert "pickle" in version.status_message
    with pytest.raises(NotFoundError, match="no READY version"):
        resolve(store, "default", "churn")
