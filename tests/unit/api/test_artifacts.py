from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from loopml.client import Client
from loopml.core.errors import InvalidPathError, NotFoundError, ValidationError
from loopml.settings import Settings
from tests.corpus import TRAVERSAL_KEYS


def test_upload_download_roundtrip_with_checksum(client: Client, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    source = tmp_path / "model.onnx"
    source.write_bytes(data)
    info = client.artifacts.upload("default", source, "models/v1/model.onnx")
    assert info.key == "models/v1/model.onnx"
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    target = tmp_path / "out" / "model.onnx"
    client.artifacts.download("default", "models/v1/model.onnx", target)
    assert target.read_bytes() == data
    assert client.artifacts.stat("default", "models/v1/model.onnx").size == len(data)


def test_upload_from_bytes_and_file_object_replaces(client: Client, tmp_path: Path) -> None:
    client.artifacts.upload("default", b"first", "a.txt")
    path = tmp_path / "b"
    path.write_bytes(b"second version")
    with path.open("rb") as handle:
        client.artifacts.upload("default", handle, "a.txt")
    assert client.artifacts.read_bytes("default", "a.txt") == b"second version"


def test_upload_takes_the_clis_order_and_names_a_swap(client: Client, tmp_path: Path) -> None:
    source = tmp_path / "train.csv"
    source.write_bytes(b"a,b\n1,2\n")
    assert client.artifacts.upload("default", source).key == "train.csv"
    with pytest.raises(ValidationError, match="swap the last two"):
        client.artifacts.upload("default", "data/train.csv", str(source))
    with pytest.raises(ValidationError, match="swap the last two"):
        client.artifacts.upload("default", "a.txt", b"old order")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="needs a key"):
        client.artifacts.upload("default", b"bytes have no name")


def test_download_headers_keep_content_inert(http: TestClient, client: Client) -> None:
    client.artifacts.upload("default", b"<script>alert(1)</script>", "page.html")
    response = http.get("/api/v1/projects/default/artifacts/page.html")
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


def test_list_with_prefix_and_pages(client: Client) -> None:
    for key in ["r/1.json", "r/2.json", "r/3.json", "other.txt"]:
        client.artifacts.upload("default", key.encode(), key)
    page = client.artifacts.list("default", prefix="r/", limit=2)
    assert [a.key for a in page.items] == ["r/1.json", "r/2.json"]
    rest = client.artifacts.list("default", prefix="r/", limit=2, cursor=page.next_cursor)
    assert [a.key for a in rest.items] == ["r/3.json"]
    assert rest.next_cursor is None
    assert len(client.artifacts.list("default").items) == 4


def test_missing_artifact_and_project_are_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.artifacts.read_bytes("default", "nope.bin")
    with pytest.raises(NotFoundError):
        client.artifacts.upload("ghost", b"x", "x.bin")
    with pytest.raises(NotFoundError):
        client.artifacts.delete("default", "nope.bin")


def test_delete_artifact(client: Client) -> None:
    client.artifacts.upload("default", b"x", "tmp.bin")
    client.artifacts.delete("default", "tmp.bin")
    assert client.artifacts.list("default").items == []


def test_deleted_project_frees_artifacts_and_name_reuse_sees_none(
    client: Client, settings: Settings
) -> None:
    client.projects.create("short-lived")
    client.artifacts.upload("short-lived", os.urandom(10_000), "data/big.bin")
    client.projects.delete("short-lived")
    root = Path(settings.artifact_root)
    assert not any(p.is_file() for p in root.rglob("big.bin"))
    client.projects.create("short-lived")
    assert client.artifacts.list("short-lived").items == []


@pytest.fixture
def canary(settings: Settings) -> Path:
    outside = Path(settings.artifact_root).parent / "canary.txt"
    outside.write_text("untouched")
    return outside


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_traversal_corpus_is_refused_everywhere(
    key: str, client: Client, http: TestClient, canary: Path
) -> None:
    with pytest.raises(InvalidPathError, match="Invalid path"):
        client.artifacts.upload("default", b"pwned", key)
    with pytest.raises(InvalidPathError):
        client.artifacts.read_bytes("default", key)
    with pytest.raises(InvalidPathError):
        client.artifacts.delete("default", key)
    with pytest.raises(InvalidPathError):
        client.artifacts.list("default", prefix=key)
    head = http.head(f"/api/v1/projects/default/artifacts/{quote(key, safe='')}")
    assert head.status_code == 400
    assert canary.read_text() == "untouched"
    assert client.artifacts.list("default").items == []


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/v1/projects/default/artifacts/..%2f..%2f..%2fetc%2fpasswd",
        "/api/v1/projects/default/artifacts/%252e%252e%252fetc%252fpasswd",
        "/api/v1/projects/default/artifacts/a%5c..%5c..%5cwin.ini",
        "/api/v1/projects/default/artifacts/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/api/v1/projects/default/artifacts/foo%00.txt",
    ],
)
def test_encoded_paths_sent_raw_are_400(raw_path: str, http: TestClient, canary: Path) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = http.request(method, raw_path, content=b"x")
        assert response.status_code == 400, (method, response.text)
        assert response.json()["error"]["code"] == "invalid_path"
    assert canary.read_text() == "untouched"


def test_stat_errors_keep_their_class_and_message_without_a_body(client: Client) -> None:
    # HEAD answers carry no body: the error travels in headers and is rebuilt all the same.
    with pytest.raises(NotFoundError, match=r"nope\.bin"):
        client.artifacts.stat("default", "nope.bin")
    with pytest.raises(InvalidPathError, match=r"^Invalid path"):
        client.artifacts.stat("default", "../../etc/passwd")
    with pytest.raises(NotFoundError, match="ghost"):
        client.artifacts.stat("ghost", "a.bin")


def test_iter_walks_every_page(client: Client) -> None:
    keys = {f"many/{i:03d}.bin" for i in range(25)}
    for key in keys:
        client.artifacts.upload("default", b"x", key)
    assert [a.key for a in client.artifacts.iter("default", page_size=4)] == sorted(keys)
