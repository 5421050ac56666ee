"""Shared by the deployment tests: tiny real models registered through the real registry,
the platform app served by uvicorn in a thread, and the replica processes it starts."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before ONNX Runtime starts its thread pools: do not spin on a small, shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import httpx
import pandas as pd
import psutil
import uvicorn
from fastapi import FastAPI

import loopml
from loopml.client import Client
from loopml.core.registry import ModelVersion
from loopml.deploy import Serving
from loopml.platform import create_api_app
from loopml.registry import register_version
from loopml.settings import Settings
from loopml.storage import ArtifactStore
from loopml.store import MetadataStore
from tests.conftest import free_port
from tests.waiting import eventually

MODEL = "cancer"
REPLICA_MODULE = "loopml.deploy.targets._replica"


def cancer_frame() -> tuple[pd.DataFrame, pd.Series[Any]]:
    """Eight columns of scikit-learn's breast cancer data (bundled, no download)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:, :8].copy()
    frame.columns = [f"f{i}" for i in range(8)]
    return frame, data.target


def fit(c: float) -> Any:
    """A logistic regression on the frame; ``c`` makes versions differ."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = cancer_frame()
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=200)).fit(frame, target)


def register_model(
    settings: Settings,
    store: MetadataStore,
    artifacts: ArtifactStore,
    model: Any,
    *,
    name: str = MODEL,
    versions: int = 1,
) -> list[ModelVersion]:
    """Log ``model`` from a run and register it ``versions`` times (each a new version)."""
    frame, _ = cancer_frame()
    with loopml.start_run("deploy-tests", settings=settings) as run:
        run.log_model(model, sample=frame.head(20))
    return [
        register_version(
            store, artifacts, project="default", model_name=name, run_id=run.id, actor="t"
        )
        for _ in range(versions)
    ]


@dataclass(frozen=True)
class PackageFiles:
    """A real model package's files, to log again and again without packaging again."""

    files: dict[str, bytes]
    manifest: bytes


def package_files(dest: Path, c: float = 1.0) -> PackageFiles:
    """Package ``fit(c)`` once (ONNX and skops, with its manifest)."""
    from loopml.packaging import package_model

    frame, _ = cancer_frame()
    package = package_model(fit(c), dest, sample=frame.head(20))
    files = {p.name: p.read_bytes() for p in package.path.iterdir() if p.is_file()}
    manifest = files.pop("loopml-model.json")
    return PackageFiles(files, manifest)


def register_files(
    store: MetadataStore,
    artifacts: ArtifactStore,
    package: PackageFiles,
    *,
    name: str = MODEL,
    project: str = "default",
) -> ModelVersion:
    """Log ``package`` from a new run and register it as the next version of ``name``."""
    from tests.tracking_rows import log_model, make_run

    run = make_run(store, project)
    log_model(store, artifacts, run, files=package.files, manifest=package.manifest)
    return register_version(
        store, artifacts, project=project, model_name=name, run_id=run.id, actor="t"
    )


def instances(rows: int = 2) -> list[dict[str, float]]:
    frame, _ = cancer_frame()
    return [{k: float(v) for k, v in row.items()} for row in frame.head(rows).to_dict("records")]


class Platform:
    """The platform app (``create_api_app(settings)``) under uvicorn in a thread, on a real
    port; ``restart`` stops it (lifespan shutdown: every replica stops) and starts a new
    app on the same home."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        # Replicas log their predictions to the platform's configured address: this one.
        server = settings.server.model_copy(update={"port": self.port})
        self.settings = settings.model_copy(update={"server": server})
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app: FastAPI = create_api_app(self.settings)

    @property
    def serving(self) -> Serving:
        serving: Serving = self.app.state.running.serving
        return serving

    @property
    def store(self) -> MetadataStore:
        store: MetadataStore = self.app.state.running.context.store
        return store

    @property
    def artifacts(self) -> ArtifactStore:
        artifacts: ArtifactStore = self.app.state.running.context.artifacts
        return artifacts

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", ws="none"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        wait_until(lambda: server.started, 60, "the platform did not start")

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(60)
            assert not self._thread.is_alive(), "the platform did not stop"
        self._server = self._thread = None

    def restart(self) -> None:
        self.stop()
        self.app = create_api_app(self.settings)
        self.start()

    def predict(self, client: httpx.Client, name: str, **headers: str) -> httpx.Response:
        return client.post(
            f"{self.url}/deployments/{name}/predict",
            json={"instances": instances()},
            headers=headers,
        )


@contextmanager
def running_platform(settings: Settings) -> Iterator[Platform]:
    """A started ``Platform`` until the block ends."""
    platform = Platform(settings)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def wait_until(check: Callable[[], Any], timeout: float, message: str) -> Any:
    """Poll ``check`` until it is truthy; fail with ``message`` after ``timeout`` s."""
    return eventually(check, timeout, message)


def replica_processes(deployment: str | None = None) -> list[psutil.Process]:
    """The model-server replicas this test process started (for ``deployment``)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.Error:
            continue
        if REPLICA_MODULE not in command:
            continue
        if deployment is None or command[command.index("--deployment") + 1] == deployment:
            found.append(child)
    return found


def home_settings(home: Path) -> Settings:
    """Settings for a home of its own (explicit, so a module-scoped fixture does not depend
    on the per-test environment)."""
    return Settings(
        home=home,
        database={"url": f"sqlite:///{home / 'loopml.db'}"},
        artifacts={"root": str(home / "artifacts")},
    )


@dataclass
class LabelledTraffic:
    """Clients predicting one row at a time from the cancer data, sending each row's true
    label back through the feedback API; every answer and failure is kept with its time."""

    platform: Platform
    name: str
    labels: bool = True
    project: str = "default"
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LabelledTraffic:
        self._threads = [threading.Thread(target=self._predict, args=(i,)) for i in range(2)]
        if self.labels:
            self._threads.append(threading.Thread(target=self._label))
        for thread in self._threads:
            thread.start()
        return self

    def _predict(self, offset: int) -> None:
        frame, target = cancer_frame()
        rows = frame.to_dict("records")
        url = f"{self.platform.url}/deployments/{self.name}/predict"
        with httpx.Client(timeout=60, trust_env=False) as http:
            for i in itertools.count(offset * 7, 2):
                if self._stop.is_set():
                    return
                row = i % len(rows)
                started = time.monotonic()
                try:
                    answer = http.post(url, json={"instances": [rows[row]]})
                except httpx.HTTPError as exc:
                    self.failures.append((started, "", repr(exc)))
                    continue
                version = answer.headers.get("x-loopml-model-version", "")
                if answer.status_code != 200:
                    self.failures.append((started, version, f"{answer.status_code}"))
                    continue
                self.answers.append((started, version))
                with self._lock:
                    self._pending.append(
                        {"inference_id": answer.json()["inference_id"], "label": int(target[row])}
                    )

    def _label(self) -> None:
        with Client(self.platform.url, timeout=30) as client:
            while not self._stop.wait(0.3):
                with self._lock:
                    batch, self._pending = self._pending, []
                if batch:
                    client.predictions.feedback_many(self.name, batch, project=self.project)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def versions_since(self, moment: float) -> set[str]:
        return {version for at, version in list(self.answers) if at >= moment}
