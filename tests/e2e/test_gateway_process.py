"""The gateway as processes of its own: a real ``loopml up`` with two gateway processes,
either on a port of their own (``gateway.port``) or on the platform's one port in front of it
(``gateway.front``); a deployment served through them while the platform is stopped, its
answers in the prediction log, a canary moved from 10 to 50 % under load with no failed
request, and a gateway process killed under load, restarted, with only the requests it held
failing."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port, wait_for_port
from tests.unit.deploy.deploy_support import instances
from tests.waiting import REQUEST_GUARD_S, eventually

from .conftest import RunningServer, log_cancer_model, running_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GATEWAY_MODULE = "loopml.serve.gateway"


class Served:
    def __init__(self, server: RunningServer, url: str, front: bool) -> None:
        self.server = server
        self.url = url
        self.front = front


@pytest.fixture(scope="module", params=["port", "front"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    front = request.param == "front"
    root = tmp_path_factory.mktemp(f"gateway-{request.param}")
    home = root / "home"
    home.mkdir()
    port = free_port()
    env = {"LOOPML_GATEWAY_PROCESSES": "2", "LOOPML_SERVER_MAX_BODY_BYTES": str(1024 * 1024)}
    if front:
        env["LOOPML_GATEWAY_FRONT"] = "true"
    else:
        env["LOOPML_GATEWAY_PORT"] = str(port)
    with running_server(home, env) as server:
        log_cancer_model(server, root / "pkg", versions=2)
        deployed = server.cli("deploy", "cancer/1", "--name", "churn", "--replicas", "1")
        assert deployed.returncode == 0, deployed.stderr
        if front:
            yield Served(server, server.url, front=True)
        else:
            assert wait_for_port(port), (home / "logs" / "gateway.log").read_text()
            yield Served(server, f"http://127.0.0.1:{port}", front=False)


def _gateways(server: RunningServer) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and GATEWAY_MODULE in child.cmdline():
                found.append(child)
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
    return found


def _predict(client: httpx.Client, url: str, request_id: str | None = None) -> httpx.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    return client.post(
        f"{url}/deployments/churn/predict", json={"instances": instances(2)}, headers=headers
    )


def _until(check: Callable[[], object], what: str, timeout: float = 60) -> None:
    eventually(check, timeout, what, interval_s=0.1)


def test_serves_a_deployment_and_logs_every_answer(served: Served) -> None:
    server = served.server
    # The module's tests share this server and may run in any order (pytest-randomly): the
    # canary test leaves a canary of cancer/2 at 50 %, and the kill tests leave gateway
    # processes the platform is restarting. This one asks for neither.
    _until(lambda: len(_gateways(server)) == 2, "two gateway processes")
    removed = server.cli("deployments", "update", "churn", "--no-canary")
    assert removed.returncode == 0, removed.stderr
    ids = [f"gw-{n}" for n in range(20)]
    with httpx.Client(trust_env=False, timeout=30) as client:

        def primary_only() -> bool:  # 20 in a row: 1e-6 with a 50 % canary still routed
            answers = (_predict(client, served.url) for _ in range(20))
            return all(a.headers.get("x-loopml-model-version") == "1" for a in answers)

        # The route table is here, without a canary.
        _until(primary_only, "20 answers in a row from cancer/1, the canary removed")
        # Served by the gateway processes alone: the platform is stopped meanwhile.
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            answers = [_predict(client, served.url, request_id) for request_id in ids]
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        for request_id, answer in zip(ids, answers, strict=True):
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-loopml-model-version"] == "1"
            assert answer.headers["x-loopml-revision"] == "1"
            assert answer.headers["x-inference-id"] == request_id
            assert len(answer.json()["predictions"]) == 2
        # What the gateway process does not serve itself, the platform does, as on its port.
        ready = client.get(f"{served.url}/v2/health/ready")
        assert ready.status_code == 200, ready.text
        assert client.head(f"{served.url}/v2/health/ready").status_code == 200
        metadata = client.get(f"{served.url}/deployments/churn/v2/models/cancer")
        assert metadata.status_code == 200, metadata.text
        unknown = client.post(f"{served.url}/deployments/nope/predict", json={"instances": []})
        assert unknown.status_code == 404
        assert "no deployment 'nope'" in unknown.json()["error"]["message"]
        # V2 errors keep the protocol's body through the relay.
        wrong = client.get(f"{served.url}/v2/models/cancer/infer")
        assert wrong.status_code == 405
        assert isinstance(wrong.json()["error"], str)
        api = client.get(f"{served.url}/api/v1/projects")
        if served.front:  # the one port: the API on the same connection, then serving again
            assert api.status_code == 200, api.text
            assert _predict(client, served.url).status_code == 200
        else:  # the API is on the platform's port; this one says so
            assert api.status_code == 404
            assert server.url in api.json()["error"]["message"]
        # A cross-site call is the platform guard's to refuse, through this port too.
        refused = client.post(
            f"{served.url}/deployments/churn/predict",
            json={"instances": instances(1)},
            headers={"origin": "http://evil.example"},
        )
        assert refused.status_code == 403
        # Over the body limit: 413 before the body is read.
        huge = client.post(
            f"{served.url}/deployments/churn/predict",
            content=b"x" * (2 * 1024 * 1024),
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413

    def logged() -> bool:
        shown = server.cli(
            "sql", "SELECT inference_id FROM churn__predictions", "-f", "json", timeout=60
        )
        if shown.returncode != 0:
            return False
        found = {row["inference_id"] for row in json.loads(shown.stdout)}
        return set(ids) <= found

    _until(logged, "every answer logged", timeout=60)
    # The gateway processes' traffic is on the platform's /metrics.
    metrics = httpx.get(f"{server.url}/metrics", trust_env=False, timeout=REQUEST_GUARD_S).text
    assert 'loopml_gateway_requests_total{deployment="churn"' in metrics


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    """Status and body of ``request`` sent as written (a client library sends one Host)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_every_listening_process_refuses_a_missing_repeated_or_foreign_host(
    served: Served,
) -> None:
    """RELIABILITY 31: the gateway processes refuse what the platform's guard refuses, with
    the same answer, on what they serve (the lean predict path too) and what they relay."""
    platform = served.server.url
    body = json.dumps({"instances": instances(1)}).encode()
    cases = [
        b"",
        b"host: 127.0.0.1\r\nhost: evil.example\r\n",
        b"host: evil.example\r\nhost: 127.0.0.1\r\n",
        b"host: evil.example\r\n",
    ]
    with httpx.Client(trust_env=False, timeout=30) as client:
        assert _predict(client, served.url).status_code == 200  # lean: served by a gateway
    for lines in cases:
        close = lines + b"connection: close\r\n"
        # The platform's own answer on its own port (the one port, in front).
        status, expected = _raw(platform, b"GET /api/v1/projects HTTP/1.1\r\n%b\r\n" % close)
        assert status == 400, expected
        for request in (
            b"GET /metrics HTTP/1.1\r\n%b\r\n" % close,
            b"POST /deployments/churn/predict HTTP/1.1\r\n%bcontent-type: application/json"
            b"\r\ncontent-length: %d\r\n\r\n%b" % (close, len(body), body),
        ):
            assert _raw(served.url, request) == (400, expected), request
        status, v2 = _raw(served.url, b"GET /v2/models/cancer HTTP/1.1\r\n%b\r\n" % close)
        assert status == 400
        assert json.loads(v2)["error"] == json.loads(expected)["error"]["message"]


def _load(url: str, stop: threading.Event, outcomes: Counter[str], versions: list[str]) -> None:
    with httpx.Client(trust_env=False, timeout=30) as client:
        while not stop.is_set():
            try:
                answer = _predict(client, url)
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
                continue
            outcomes[str(answer.status_code)] += 1
            if answer.status_code == 200:
                versions.append(answer.headers["x-loopml-model-version"])


def test_a_canary_move_reaches_the_gateways_within_a_second(served: Served) -> None:
    server = served.server
    canary = server.cli("deployments", "update", "churn", "--canary", "cancer/2", "--percent", "10")
    assert canary.returncode == 0, canary.stderr
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    versions: list[str] = []
    threads = [
        threading.Thread(target=_load, args=(served.url, stop, outcomes, versions))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    try:
        _until(lambda: len(versions) > 300, "300 answers")
        moved = server.cli(
            "deployments", "update", "churn", "--canary", "cancer/2", "--percent", "50"
        )
        assert moved.returncode == 0, moved.stderr
        time.sleep(1.0)
        start = len(versions)
        _until(lambda: len(versions) - start >= 400, "400 more answers")
        after = versions[start:]
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    share = after.count("2") / len(after)
    assert 0.38 < share < 0.62, share
    assert set(outcomes) == {"200"}, outcomes


def test_a_killed_gateway_process_is_restarted_and_loses_only_what_it_held(
    served: Served,
) -> None:
    server = served.server
    before = _gateways(server)
    assert len(before) == 2
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    versions: list[str] = []
    connections = 4
    threads = [
        threading.Thread(target=_load, args=(served.url, stop, outcomes, versions))
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    try:
        _until(lambda: len(versions) > 200, "200 answers")
        victim = before[0]
        os.kill(victim.pid, signal.SIGKILL)
        _until(
            lambda: len(_gateways(server)) == 2 and victim not in _gateways(server),
            "a new gateway in the killed one's place",
        )
        served_then = len(versions)
        _until(lambda: len(versions) - served_then > 200, "200 answers after the kill")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    failed = sum(n for outcome, n in outcomes.items() if outcome != "200")
    # Each client connection may have had one request in the killed process.
    assert failed <= connections, outcomes
    log = (server.home / "logs" / "gateway.log").read_text()
    assert "serving on" in log


ADMIN_PASSWORD = "a gateway admin passphrase 9"


def test_with_authentication_a_token_is_checked_by_the_platform_and_revocation_holds(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {"LOOPML_GATEWAY_PORT": str(port), "LOOPML_AUTH_ENABLED": "true"}
    with running_server(home, env) as server:
        made = server.cli(
            "users", "create-admin", "ada", "--password-stdin", input=f"{ADMIN_PASSWORD}\n"
        )
        assert made.returncode == 0, made.stderr
        login = httpx.post(
            f"{server.url}/api/v1/auth/login",
            json={"user": "ada", "password": ADMIN_PASSWORD},
            trust_env=False,
            timeout=REQUEST_GUARD_S,
        )
        assert login.status_code == 201, login.text
        server.env["LOOPML_TOKEN"] = login.json()["token"]
        log_cancer_model(server, tmp_path / "pkg")
        deployed = server.cli("deploy", "cancer/1", "--name", "churn", "--replicas", "1")
        assert deployed.returncode == 0, deployed.stderr
        made = server.cli(
            "tokens", "create", "churn-client", "-p", "default", "--role", "viewer",
            "--resource", "deployment:churn", "-o", "json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        client_token = json.loads(made.stdout)["token"]
        assert wait_for_port(port)
        url = f"http://127.0.0.1:{port}/deployments/churn/predict"
        body = {"instances": instances(1)}
        with httpx.Client(trust_env=False, timeout=30) as client:
            anonymous = client.post(url, json=body)
            assert anonymous.status_code == 401, anonymous.text
            bearer = {"authorization": f"Bearer {client_token}"}
            for _ in range(30):
                answer = client.post(url, json=body, headers=bearer)
                assert answer.status_code == 200, answer.text
                # The platform's word to its gateway never reaches the client.
                assert "x-loopml-allowed" not in answer.headers
            wrong = client.post(url, json=body, headers={"authorization": "Bearer lm_nope"})
            assert wrong.status_code == 401
            revoked = server.cli("tokens", "revoke", client_token)
            assert revoked.returncode == 0, revoked.stderr
            eventually(
                lambda: client.post(url, json=body, headers=bearer).status_code != 200,
                60,
                "the revoked token to be refused",
                interval_s=0.2,
            )
            refused = client.post(url, json=body, headers=bearer)
            assert refused.status_code == 401, f"{refused.status_code}: {refused.text}"


def test_in_front_one_port_streams_uploads_and_outlives_its_gateways(served: Served) -> None:
    if not served.front:
        pytest.skip("gateway.port: the API is on the platform's own port")
    server = served.server
    gateways = _gateways(server)
    rss_before = max(process.memory_info().rss for process in gateways)
    # 64 MiB up and down through the one port: streamed, the gateways hold none of it.
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    url = f"{served.url}/api/v1/projects/default/artifacts/front.bin"
    with httpx.Client(trust_env=False, timeout=120) as client:
        put = client.put(url, content=chunks(), headers={"content-type": "application/x-data"})
        assert put.status_code == 201, put.text
        assert put.json()["size"] == size
        got = 0
        with client.stream("GET", url) as answer:
            assert answer.status_code == 200
            for piece in answer.iter_bytes():
                got += len(piece)
        assert got == size
    rss_after = max(process.memory_info().rss for process in _gateways(server))
    assert rss_after - rss_before < 24 * 1024 * 1024, (rss_before, rss_after)
    # Every gateway process killed at once: a new connection waits in the port's backlog
    # (the platform holds the socket) and is answered once they are back.
    for process in gateways:
        os.kill(process.pid, signal.SIGKILL)
    health = httpx.get(f"{served.url}/api/v1/health", trust_env=False, timeout=30)
    assert health.status_code == 200, health.text
    _until(lambda: len(_gateways(server)) == 2, "two gateways")


def test_a_stop_loses_no_answer_the_gateway_processes_gave(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"LOOPML_GATEWAY_FRONT": "true"}
    ids = [f"stop-{n}" for n in range(300)]
    with running_server(home, env) as server:
        log_cancer_model(server, tmp_path / "pkg")
        deployed = server.cli("deploy", "cancer/1", "--name", "churn", "--replicas", "1")
        assert deployed.returncode == 0, deployed.stderr
        with httpx.Client(trust_env=False, timeout=30) as client:
            for request_id in ids:
                assert _predict(client, server.url, request_id).status_code == 200
        # Stopped at once: the last answers are still in the gateway process's next report.
        server.process.terminate()
        # uvicorn ends a graceful stop by raising the signal it caught again.
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    with running_server(home, env) as server:
        shown = server.cli(
            "sql", "SELECT count(DISTINCT inference_id) AS n FROM churn__predictions "
            "WHERE inference_id LIKE 'stop-%'", "-f", "json", timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == [{"n": len(ids)}]
