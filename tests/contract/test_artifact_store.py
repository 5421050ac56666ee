"""The one contract every ArtifactStore backend passes: a local folder and S3 (moto)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path

import boto3
import pytest

from loopml.core.errors import InvalidPathError, NotFoundError
from loopml.storage import ArtifactStore, LocalArtifactStore, S3ArtifactStore
from tests.corpus import TRAVERSAL_KEYS

MiB = 1024 * 1024
PART_SIZE = 5 * MiB
S3_PREFIX = "team/artifacts"
CANARY = b"canary: must never change"

# RELIABILITY.md appendix "path components" (shared with the validator and API tests), plus
# the extra cases of item 1.
TRAVERSAL_CORPUS = [
    *TRAVERSAL_KEYS,
    *(
        k
        for k in ["..\\..\\", "C:\\x", "%00", "a//b", "./a", ".loopml-tmp/x"]
        if k not in TRAVERSAL_KEYS
    ),
]


@dataclass
class Backend:
    """A store plus what only its backend can see: leftovers, the outside world, a URI."""

    store: ArtifactStore
    leftovers: Callable[[], list[str]]  # temp files / temp objects / incomplete uploads
    outside: Callable[[], dict[str, bytes]]  # everything outside the store's root
    knows_sha256: bool  # whether stat() returns the stored hash
    open_args: dict[str, object]  # how another process opens the same store


def _local(tmp_path: Path) -> Backend:
    root = tmp_path / "root"
    (tmp_path / "canary.txt").write_bytes(CANARY)
    store = LocalArtifactStore(root)

    def outside() -> dict[str, bytes]:
        return {
            str(p.relative_to(tmp_path)): p.read_bytes()
            for p in tmp_path.rglob("*")
            if p.is_file() and root not in p.parents
        }

    return Backend(
        store=store,
        leftovers=lambda: sorted(p.name for p in (root / ".loopml-tmp").iterdir()),
        outside=outside,
        knows_sha256=False,
        open_args={"uri": str(root)},
    )


def _s3(request: pytest.FixtureRequest) -> Backend:
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket: str = request.getfixturevalue("s3_bucket")
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds)
    client.put_object(Bucket=bucket, Key="canary.txt", Body=CANARY)
    store = S3ArtifactStore(
        bucket,
        S3_PREFIX,
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        part_size=PART_SIZE,
    )

    def keys(prefix: str) -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def leftovers() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [f"upload:{u['Key']}" for u in uploads] + keys(f"{S3_PREFIX}/.loopml-tmp/")

    def outside() -> dict[str, bytes]:
        return {
            key: client.get_object(Bucket=bucket, Key=key)["Body"].read()
            for key in keys("")
            if not key.startswith(f"{S3_PREFIX}/")
        }

    return Backend(
        store=store,
        leftovers=leftovers,
        outside=outside,
        knows_sha256=True,
        open_args={
            "uri": f"s3://{bucket}/{S3_PREFIX}",
            "s3_endpoint_url": endpoint,
            "s3_access_key_id": "testing",
            "s3_secret_access_key": "testing",
            "s3_part_size": PART_SIZE,
        },
    )


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _local(tmp_path) if request.param == "local" else _s3(request)


@pytest.fixture
def store(backend: Backend) -> ArtifactStore:
    return backend.store


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def chunked(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``data`` in chunks cycling through ``sizes``."""
    pos, i = 0, 0
    while pos < len(data):
        step = sizes[i % len(sizes)]
        yield data[pos : pos + step]
        pos, i = pos + step, i + 1


def failing(data: bytes, chunk: int) -> Iterator[bytes]:
    """Yields ``data`` in chunks, then fails like a dropped client connection."""
    yield from chunked(data, [chunk])
    raise ConnectionResetError("client went away mid-upload")


# ---------------------------------------------------------------- reads and writes


def test_roundtrip_and_sha256(store: ArtifactStore) -> None:
    info = store.write_bytes("reports/2026/eval.json", b'{"auc": 0.91}')

    assert info.key == "reports/2026/eval.json"
    assert info.size == 13
    assert info.sha256 == sha(b'{"auc": 0.91}')
    assert info.modified.tzinfo is not None
    assert info.modified.utcoffset() == timedelta(0)
    assert store.read_bytes("reports/2026/eval.json") == b'{"auc": 0.91}'


def test_open_returns_a_binary_file(store: ArtifactStore) -> None:
    store.write_bytes("model.onnx", b"0123456789")

    with store.open("model.onnx") as stream:
        assert stream.read(4) == b"0123"
        assert stream.read() == b"456789"
        assert stream.read(4) == b""
    assert stream.closed


@pytest.mark.parametrize("key", ["model (1).onnx", "a-b_c+d=e@f,g~h[1].txt", "sub dir/x y.csv"])
def test_punctuation_keys(store: ArtifactStore, key: str) -> None:
    store.write_bytes(key, key.encode())

    assert store.read_bytes(key) == key.encode()
    assert [i.key for i in store.list()] == [key]


@pytest.mark.parametrize("key", ["données/été.csv", "模型/v1.bin"])
def test_non_ascii_keys_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(InvalidPathError, match="ASCII"):
        store.write_bytes(key, b"x")
    assert list(store.list()) == []


def test_percent_encoded_key_is_stored_decoded(store: ArtifactStore) -> None:
    info = store.write_bytes("reports%2Feval%20v1.json", b"x")

    assert info.key == "reports/eval v1.json"
    assert store.read_bytes("reports/eval v1.json") == b"x"


def test_empty_object(store: ArtifactStore) -> None:
    info = store.write_bytes("empty.bin", b"")

    assert (info.size, info.sha256) == (0, sha(b""))
    assert store.read_bytes("empty.bin") == b""


@pytest.mark.parametrize(
    "size",
    [PART_SIZE, PART_SIZE + 1, 11 * MiB + 123],
    ids=["one-part", "one-part-plus-a-byte", "three-parts"],
)
def test_streaming_write_bigger_than_a_part(backend: Backend, size: int) -> None:
    store = backend.store
    data = payload(size)

    info = store.write("big/weights.bin", chunked(data, [1, 64 * 1024, 3 * MiB, 7 * MiB]))

    assert (info.size, info.sha256) == (size, sha(data))
    stat = store.stat("big/weights.bin")
    assert stat.size == size
    assert stat.sha256 == (sha(data) if backend.knows_sha256 else None)
    assert b"".join(store.iter_bytes("big/weights.bin", chunk_size=MiB)) == data
    assert backend.leftovers() == []


def test_overwrite_replaces_content(store: ArtifactStore) -> None:
    store.write_bytes("m.bin", payload(PART_SIZE + 10))
    store.write_bytes("m.bin", b"small now")

    assert store.read_bytes("m.bin") == b"small now"
    assert store.stat("m.bin").size == 9
    assert [i.key for i in store.list()] == ["m.bin"]


def test_stat_and_exists(store: ArtifactStore) -> None:
    store.write_bytes("a/b.txt", b"hello")

    info = store.stat("a/b.txt")
    assert (info.key, info.size) == ("a/b.txt", 5)
    assert info.modified.tzinfo is not None
    assert store.exists("a/b.txt")
    assert not store.exists("a/c.txt")
    assert not store.exists("a")  # a folder is not an object


def test_missing_keys_raise_not_found(store: ArtifactStore) -> None:
    for call in (store.open, store.stat, store.delete, store.read_bytes):
        with pytest.raises(NotFoundError):
            call("nope/missing.bin")
    with pytest.raises(NotFoundError):
        list(store.iter_bytes("missing.bin"))


def test_uri_names_the_root(store: ArtifactStore) -> None:
    assert store.uri.startswith(("file:///", "s3://"))


# ---------------------------------------------------------------- listing


LISTED = ["z", "b.txt", "a/x.txt", "a.txt", "a0", "a/b/c.txt", "ab/y", "a-b/q"]


def test_list_is_recursive_and_sorted(store: ArtifactStore) -> None:
    for key in LISTED:
        store.write_bytes(key, key.encode())

    infos = list(store.list())

    assert [i.key for i in infos] == sorted(LISTED)
    assert all(i.size == len(i.key.encode()) for i in infos)


def test_list_prefix_is_a_folder(store: ArtifactStore) -> None:
    for key in LISTED:
        store.write_bytes(key, b"x")

    assert [i.key for i in store.list("a/")] == ["a/b/c.txt", "a/x.txt"]
    assert [i.key for i in store.list("a")] == ["a/b/c.txt", "a/x.txt"]  # not "a.txt", "ab/"
    assert [i.key for i in store.list("a/b")] == ["a/b/c.txt"]
    assert list(store.list("missing/")) == []
    assert list(store.list("a.txt")) == []  # an object is not a folder


# ---------------------------------------------------------------- deleting


def test_delete(store: ArtifactStore) -> None:
    store.write_bytes("a/b/c.txt", b"1")
    store.write_bytes("a/keep.txt", b"2")

    store.delete("a/b/c.txt")

    assert not store.exists("a/b/c.txt")
    assert [i.key for i in store.list()] == ["a/keep.txt"]
    with pytest.raises(NotFoundError):
        store.delete("a/b/c.txt")
    with pytest.raises(NotFoundError):
        store.read_bytes("a/b/c.txt")


def test_delete_prefix(store: ArtifactStore) -> None:
    for key in ["runs/1/model.onnx", "runs/1/metrics/auc.json", "runs/10/x", "runs/1.txt"]:
        store.write_bytes(key, b"x")

    assert store.delete_prefix("runs/1") == 2
    assert [i.key for i in store.list()] == ["runs/1.txt", "runs/10/x"]
    assert store.delete_prefix("runs/1/") == 0
    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        store.delete_prefix("")
    assert len(list(store.list())) == 2


# ---------------------------------------------------------------- atomicity (RELIABILITY 23)


@pytest.mark.parametrize(
    "sent", [10, 3 * PART_SIZE // 2, 2 * PART_SIZE + 1], ids=["small", "in-part-2", "in-part-3"]
)
def test_failed_write_leaves_nothing(backend: Backend, sent: int) -> None:
    store = backend.store

    with pytest.raises(ConnectionResetError, match="mid-upload"):
        store.write("half/model.bin", failing(payload(sent), chunk=MiB))

    assert not store.exists("half/model.bin")
    assert list(store.list()) == []
    assert backend.leftovers() == []


def test_failed_overwrite_keeps_the_old_object(backend: Backend) -> None:
    store = backend.store
    store.write_bytes("model.bin", b"version 1")

    with pytest.raises(ConnectionResetError):
        store.write("model.bin", failing(payload(PART_SIZE + MiB), chunk=MiB))

    assert store.read_bytes("model.bin") == b"version 1"
    assert backend.leftovers() == []


_KILLED_WRITER = """
import json, sys, time
from loopml.storage import open_artifact_store

args = json.loads(sys.argv[1])
store = open_artifact_store(args.pop("uri"), **args)

def chunks():
    yield b"x" * (6 * 1024 * 1024)  # past one part: S3 has started a multipart upload
    yield b"y" * 1024
    print("writing", flush=True)
    time.sleep(60)
    yield b"never"

store.write("killed/model.bin", chunks())
"""


def test_cleanup_collects_what_a_killed_writer_left(backend: Backend) -> None:
    store = backend.store
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, json.dumps(backend.open_args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "writing"
    finally:
        writer.kill()
        writer.wait(timeout=10)
        if writer.stdout is not None:
            writer.stdout.close()

    assert not store.exists("killed/model.bin")
    assert list(store.list()) == []
    assert backend.leftovers() != []
    assert store.cleanup() == 0  # younger than the default hour: maybe still in flight
    assert backend.leftovers() != []

    assert store.cleanup(older_than=timedelta(0)) >= 1

    assert backend.leftovers() == []
    assert store.cleanup(older_than=timedelta(0)) == 0


def test_cleanup_leaves_objects_alone(store: ArtifactStore) -> None:
    store.write_bytes("keep.txt", b"k")

    assert store.cleanup(older_than=timedelta(0)) == 0
    assert store.read_bytes("keep.txt") == b"k"


# ---------------------------------------------------------------- hostile keys (RELIABILITY 1)


@pytest.mark.parametrize("bad", TRAVERSAL_CORPUS)
def test_traversal_corpus_is_refused(backend: Backend, bad: str) -> None:
    store = backend.store
    store.write_bytes("inside.txt", b"inside")
    before = backend.outside()
    assert before  # the canary is there to be watched

    attempts: list[Callable[[], object]] = [
        lambda: store.write(bad, [b"pwned"]),
        lambda: store.write_bytes(bad, b"pwned"),
        lambda: store.open(bad),
        lambda: store.read_bytes(bad),
        lambda: store.stat(bad),
        lambda: store.exists(bad),
        lambda: store.delete(bad),
        lambda: store.list(bad),
        lambda: store.delete_prefix(bad),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidPathError, match=r"^Invalid path") as caught:
            attempt()
        assert caught.value.status == 400

    assert backend.outside() == before
    assert [i.key for i in store.list()] == ["inside.txt"]
    assert store.read_bytes("inside.txt") == b"inside"


def test_modified_is_utc(store: ArtifactStore) -> None:
    store.write_bytes("t.txt", b"t")

    assert store.stat("t.txt").modified.tzinfo == UTC
    assert next(iter(store.list())).modified.tzinfo == UTC
