"""`loopml up` as a subprocess, called through the CLI and the SDK like a user would."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from pathlib import Path

import psutil
import pytest

from loopml.client import Client
from tests.conftest import free_port
from tests.waiting import REQUEST_GUARD_S

from .conftest import LOOPML, UPLOAD_LIMIT, RunningServer, base_env

pytestmark = pytest.mark.e2e


def test_up_becomes_healthy_and_reports_how_fast(server: RunningServer) -> None:
    print(f"\n[loopml e2e] loopml up ready after {server.ready_after_s:.2f} s")
    with Client(server.url) as client:
        assert client.health()["status"] == "ok"
    assert (server.home / "loopml.db").is_file()


def test_cli_drives_projects_and_events(server: RunningServer) -> None:
    created = server.cli("projects", "create", "e2e-demo", "-d", "from the CLI")
    assert created.returncode == 0, created.stderr
    listed = server.cli("projects", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "e2e-demo" in {p["name"] for p in json.loads(listed.stdout)}
    duplicate = server.cli("projects", "create", "e2e-demo")
    assert duplicate.returncode == 1
    assert duplicate.stderr.strip() == "error: project 'e2e-demo' already exists"
    assert "Traceback" not in duplicate.stderr
    deleted = server.cli("projects", "delete", "e2e-demo", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    events = server.cli("events", "--project", "e2e-demo", "--oldest-first", "--json")
    assert [e["type"] for e in json.loads(events.stdout)] == [
        "project.created",
        "project.deleted",
    ]


def test_oversize_streamed_upload_is_cut_off_without_growing_memory(
    server: RunningServer,
) -> None:
    proc = psutil.Process(server.process.pid)
    before = proc.memory_info().rss
    host, port = server.url.removeprefix("http://").split(":")
    sent = 0
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(
        b"PUT /api/v1/projects/default/artifacts/huge.bin HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    probes = []
    try:
        for _ in range(200):  # try to send 200 MiB against a 1 MiB limit
            conn.sendall(frame)
            sent += len(chunk)
            if not probes:  # mid-upload, the server must still answer its health probe
                with Client(server.url, timeout=REQUEST_GUARD_S) as prober:
                    probes.append(prober.health()["status"])
    except OSError:
        pass  # the server stopped reading and closed: what we want
    conn.settimeout(10)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    except OSError:
        pass
    conn.close()
    grown = proc.memory_info().rss - before
    print(f"\n[loopml e2e] sent {sent >> 20} MiB before cut-off, server RSS grew {grown >> 20} MiB")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert probes == ["ok"]
    assert grown < 50 * 1024 * 1024
    with Client(server.url) as client:
        assert client.artifacts.list("default").items == []


def test_declared_oversize_body_is_refused_before_it_is_sent(server: RunningServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("PUT", "/api/v1/projects/default/artifacts/huge.bin")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(1024**3))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    conn.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/default/artifacts/../../../../etc/passwd",
        "/api/v1/projects/default/artifacts/a/../../../etc/passwd",
        "/api/v1/projects/default/artifacts/..%2f..%2f..%2fetc%2fpasswd",
    ],
)
def test_raw_traversal_paths_never_reach_a_file(server: RunningServer, path: str) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status in (400, 404), (response.status, body[:200])
    assert b"root:" not in body


def test_up_refuses_a_public_interface(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LOOPML, "up", "--host", "0.0.0.0"],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: refusing to listen on 0.0.0.0")
    assert "Traceback" not in result.stderr


def test_cli_without_a_server_says_so_in_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env["LOOPML_CLIENT_URL"] = f"http://127.0.0.1:{free_port()}"
    # It fails at once on the refused connection (no retries, nothing waited out): the
    # timeout is a hang guard, not a bound on the CLI's start on a loaded machine.
    result = subprocess.run(
        [*LOOPML, "projects", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach loopml at")
    assert len(result.stderr.strip().splitlines()) == 1


def test_concurrent_writers_on_sqlite_all_succeed(server: RunningServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def create_many(worker: int) -> list[str]:
        names = [f"c{worker}-{i}" for i in range(10)]
        with Client(server.url) as client:
            for name in names:
                client.projects.create(name)
                client.projects.update(name, description="touched")
        return names

    with ThreadPoolExecutor(8) as pool:
        expected = {name for names in pool.map(create_many, range(8)) for name in names}
    with Client(server.url) as client:
        present = {p.name for p in client.projects.iter()}
        created = {e.subject for e in client.events.iter(type="project.created")}
    assert expected <= present
    assert expected <= created


def test_cli_moves_files_both_ways(server: RunningServer, tmp_path: Path) -> None:
    import hashlib
    import os

    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(b"x" * (UPLOAD_LIMIT + 1))
    refused = server.cli("artifacts", "upload", str(too_big))
    assert refused.returncode == 1
    assert (
        refused.stderr == f"error: request body is larger than the limit of {UPLOAD_LIMIT} bytes\n"
    )
    data = os.urandom(UPLOAD_LIMIT - 17)
    source = tmp_path / "weights.bin"
    source.write_bytes(data)
    up = server.cli("artifacts", "upload", str(source), "models/weights.bin")
    assert up.returncode == 0, up.stderr
    assert hashlib.sha256(data).hexdigest() in up.stdout
    listed = json.loads(server.cli("artifacts", "ls", "models/", "--json").stdout)
    assert [(a["key"], a["size"]) for a in listed] == [("models/weights.bin", len(data))]
    target = tmp_path / "copy.bin"
    down = server.cli("artifacts", "download", "models/weights.bin", str(target))
    assert down.returncode == 0, down.stderr
    assert target.read_bytes() == data
    bad = server.cli("artifacts", "download", "../../etc/passwd", str(tmp_path / "x"))
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: Invalid path")
    assert not (tmp_path / "x").exists()
    assert server.cli("artifacts", "rm", "models/weights.bin").returncode == 0
    assert json.loads(server.cli("artifacts", "ls", "--json").stdout) == []
