"""S3 failures become loopml errors: unreachable endpoint, missing bucket (RELIABILITY 23)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config

from loopml.core.errors import ConfigurationError, ServiceUnavailableError
from loopml.storage import S3ArtifactStore

pytestmark = pytest.mark.s3


def client_for(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )


def test_unreachable_endpoint_is_service_unavailable() -> None:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
        store = S3ArtifactStore("some-bucket", client=client_for(dead))
        check_unavailable(store)


def check_unavailable(store: S3ArtifactStore) -> None:
    with pytest.raises(ServiceUnavailableError) as caught:
        store.write_bytes("a.txt", b"x")
    assert caught.value.status == 503
    for call in (store.stat, store.open, store.delete):
        with pytest.raises(ServiceUnavailableError):
            call("a.txt")
    with pytest.raises(ServiceUnavailableError):
        list(store.list())


def test_missing_bucket_is_a_configuration_error(s3_endpoint: str) -> None:
    store = S3ArtifactStore("no-such-bucket-here", client=client_for(s3_endpoint))

    with pytest.raises(ConfigurationError, match="bucket"):
        store.write_bytes("a.txt", b"x")


def test_stat_returns_the_sha256_written_by_a_multipart_upload(
    s3_endpoint: str, s3_bucket: str
) -> None:
    client = client_for(s3_endpoint)
    store = S3ArtifactStore(s3_bucket, client=client, part_size=5 * 1024 * 1024)
    data = b"0123456789abcdef" * (700 * 1024)  # 11.2 MiB: three parts

    info = store.write("m.bin", iter([data[: 3 << 20], data[3 << 20 :]]))

    head = client.head_object(Bucket=s3_bucket, Key="m.bin")
    assert head["Metadata"] == {"sha256": info.sha256}
    assert store.stat("m.bin").sha256 == info.sha256


class ResettingProxy:
    """A TCP proxy to moto that resets the first connection once ``limit`` bytes went up."""

    def __init__(self, target_port: int, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.tripped = False
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upward: bool) -> None:
        try:
            while data := src.recv(65536):
                if upward and not self.tripped:
                    self.sent += len(data)
                    if self.sent > self.limit:
                        self.tripped = True
                        src.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()


def test_connection_reset_mid_multipart_leaves_no_object(s3_endpoint: str, s3_bucket: str) -> None:
    proxy = ResettingProxy(int(s3_endpoint.rsplit(":", 1)[1]), limit=7 * 1024 * 1024)
    try:
        store = S3ArtifactStore(
            s3_bucket, client=client_for(f"http://127.0.0.1:{proxy.port}"), part_size=5 << 20
        )
        data = b"z" * (12 << 20)

        with pytest.raises(ServiceUnavailableError):
            store.write(
                "reset/model.bin", (data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20))
            )

        assert proxy.tripped
        direct = client_for(s3_endpoint)
        assert direct.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
        # The abort went out on a fresh connection; cleanup would catch it otherwise.
        assert direct.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    finally:
        proxy.listener.close()
