"""``python -m loopml.serve``: a real server process that serves, prints nothing per request,
and drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tests.unit.conftest import DEPLOYMENT, MODEL, VERSION, Served
from tests.waiting import eventually

SERVE = [sys.executable, "-m", "loopml.serve"]


def _command(served: Served, port: int, *extra: str) -> list[str]:
    return [
        *SERVE,
        "--package",
        str(served.package.path),
        "--manifest-sha256",
        served.package.manifest_sha256,
        "--name",
        MODEL,
        "--version",
        str(VERSION),
        "--deployment",
        DEPLOYMENT,
        "--port",
        str(port),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "passive"}


def _wait_ready(process: subprocess.Popen[bytes], url: str, stderr: Path) -> None:
    with httpx.Client(base_url=url, timeout=2) as client:
        eventually(
            lambda: process.poll() is not None or client.get("/v2/health/ready").status_code == 200,
            90,
            f"{url} to be ready",
            describe=stderr.read_text,
        )
    if process.poll() is not None:
        pytest.fail(f"the server exited ({process.returncode}):\n{stderr.read_text()}")


def _raw_request(port: int, body: bytes) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return sock, head


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _stops_listening(port: int, within_s: float = 60.0) -> bool:
    return eventually(lambda: _refused(port), within_s, f"port {port} to refuse connections")


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def test_worker_serves_quietly_and_finishes_in_flight_requests_on_sigterm(
    cancer: Served, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(_command(cancer, port), stdout=out, stderr=err, env=_env())
    try:
        _wait_ready(process, url, stderr)
        after_start = stderr.read_text()
        assert f"{MODEL} version {VERSION} (onnx)" in after_start

        rows = cancer.records(slice(0, 8))
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(25):
                response = client.post("/predict", json={"instances": rows})
                assert response.status_code == 200
            assert client.post("/predict", json={"instances": [{}]}).status_code == 422
            metrics = client.get("/metrics").text
        assert _count(metrics, "/predict", "200") == 25, metrics
        assert stdout.read_text() == ""
        assert stderr.read_text() == after_start  # nothing per request, errors included

        body = orjson.dumps({"instances": rows})
        sock, head = _raw_request(port, body)
        with sock:
            sock.sendall(head + body[:100])  # the request is in flight: half its body is here
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            assert _stops_listening(port)  # no new connections once draining
            assert process.poll() is None  # still waiting for the request in flight
            sock.sendall(body[100:])
            status, payload = _read_response(sock)

        assert status == 200, payload
        expected = cancer.native.predict(cancer.frame.iloc[:8]).tolist()
        assert orjson.loads(payload)["predictions"] == expected
        assert process.wait(timeout=30) == 0
        assert stdout.read_text() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_worker_refuses_a_package_that_fails_verification(cancer: Served) -> None:
    command = _command(cancer, free_port())
    command[command.index("--manifest-sha256") + 1] = "0" * 64

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env())

    assert result.returncode == 2
    assert "hash mismatch for loopml-model.json" in result.stderr
    assert result.stdout == ""


def test_worker_binds_loopback_unless_told_otherwise(cancer: Served) -> None:
    command = _command(cancer, free_port(), "--host", "0.0.0.0")

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env())

    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert "--allow-remote" in result.stderr


def test_worker_settings_flags_are_validated(cancer: Served) -> None:
    command = _command(cancer, free_port(), "--max-batch-size", "0")

    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env())

    assert result.returncode == 2
    assert "max_batch_size" in result.stderr


def _count(metrics: str, route: str, status: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("loopml_model_requests_total{") and (
            f'route="{route}"' in line and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
