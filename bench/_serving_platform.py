"""The serving benchmark's platform helpers (``bench/serving.py`` and its modes): the
forest it serves, processes pinned to the server core, a real ``loopml up`` with a
temporary home, the deployment, and the processes behind it.

``SERVER_CORE`` is read at each start: ``bench/serving_cores.py`` widens it to both cores.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

MODEL = "bench-forest"
DEPLOYMENT = "forest"
ZERO_DEPLOYMENT = "forest-zero"
SCALE_TO_ZERO_AFTER_S = 10  # the minimum the spec allows
SERVER_CORE = "0"
ADMIN_PASSWORD = "serving bench admin passphrase"


def _model() -> tuple[Any, pd.DataFrame]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    return model.fit(frame, target), frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = orjson.loads(frame.to_json(orient="records"))
    return loaded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(command: list[str]) -> list[str]:
    return ["taskset", "-c", SERVER_CORE, *command] if shutil.which("taskset") else command


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} in {timeout} s")


@contextmanager
def _process(command: list[str], ready_url: str, what: str, **kw: Any) -> Iterator[int]:
    """Start ``command`` pinned to the server core; yield its pid once ``ready_url`` is 200."""
    process = subprocess.Popen(
        _pinned(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw
    )
    try:
        _wait_http(ready_url, process, what)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the platform


@contextmanager
def _platform(
    home: Path, *, auth: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, int, int]]:
    """A real ``loopml up`` on core 0 with a temporary home; yields its URL, port and pid. With
    ``auth``, authentication is on and platform admin ``root`` has password ``ADMIN_PASSWORD``
    (made first with ``loopml users create-admin``); ``extra_env`` adds settings."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    # The gateway inside the platform unless a caller asks otherwise: the rows that compare
    # its features (auth, monitor, feature views) watch the platform's CPU.
    env.update(LOOPML_HOME=str(home), OMP_WAIT_POLICY="passive", LOOPML_GATEWAY_FRONT="false")
    env.update(extra_env or {})
    loopml = str(Path(sys.executable).with_name("loopml"))
    if auth:
        env["LOOPML_AUTH_ENABLED"] = "true"
        admin = [loopml, "users", "create-admin", "root", "--password-stdin"]
        subprocess.run(admin, input=f"{ADMIN_PASSWORD}\n", text=True, env=env, check=True)
    with _process(
        [loopml, "up", "--port", str(port)], f"{url}/api/v1/health", "loopml up", env=env
    ) as pid:
        yield url, port, pid


def _deploy(
    url: str, home: Path, model: Any, frame: pd.DataFrame, token: str | None = None
) -> tuple[Path, str, int]:
    """Log, register, promote and deploy ``model``; also create the scale-to-zero
    deployment (not with ``token``: the auth rows need only the one). Returns the deployed
    package's folder, its manifest hash and version."""
    import loopml
    from loopml.client import Client

    with Client(url, token=token) as client:
        with loopml.start_run("bench-serving", client=client) as run:
            run.log_model(model, sample=frame.head(20))
        version = client.models.register_version(MODEL, run_id=run.id)
        assert str(version.status).lower().endswith("ready"), version.status_message
        client.models.promote(MODEL, version.version, force=True, reason="serving bench")
        client.deployments.create(DEPLOYMENT, f"{MODEL}@champion", min_replicas=1)
        if token is None:
            client.deployments.create(
                ZERO_DEPLOYMENT,
                f"{MODEL}@champion",
                min_replicas=0,
                scale_to_zero_after_s=SCALE_TO_ZERO_AFTER_S,
            )
        deployment = client.deployments.wait(DEPLOYMENT, timeout_s=120)
    revision = next(iter(deployment.traffic))
    package = home / "deployments" / "default" / DEPLOYMENT / str(revision) / "package"
    assert (package / "loopml-model.json").exists(), f"no package at {package}"
    return package, version.manifest_sha256, version.version


def _replica_pids(platform_pid: int, deployment: str) -> list[int]:
    """The pids of ``deployment``'s replicas (the platform's children serving it)."""
    import psutil

    pids = []
    for child in psutil.Process(platform_pid).children(recursive=True):
        command = child.cmdline()
        if "loopml.deploy.targets._replica" in command and deployment in _flag(command):
            pids.append(child.pid)
    return pids


def _gateway_pids(platform_pid: int) -> list[int]:
    """The pids of the platform's gateway processes."""
    import psutil

    children = psutil.Process(platform_pid).children(recursive=True)
    return [c.pid for c in children if "loopml.serve.gateway" in c.cmdline()]


def _descendants(pid: int) -> list[int]:
    """Every process ``pid`` started (replicas, gateway processes), recursively."""
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _flag(command: list[str]) -> list[str]:
    """The values of ``--deployment`` in ``command``."""
    return [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == "--deployment"]


def _deployment_status(url: str, name: str) -> str:
    from loopml.client import Client

    with Client(url) as client:
        return str(client.deployments.get(name).status)


def _wait_scaled_to_zero(url: str, timeout: float) -> float:
    """Wait until the zero deployment says ``scaled_to_zero``; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _deployment_status(url, ZERO_DEPLOYMENT).endswith("scaled_to_zero"):
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"{ZERO_DEPLOYMENT} did not scale to zero in {timeout} s")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f}"


def _rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss / 1e6)
