"""Registering an MLflow-format model through MLflow's API: the version is PACKAGING
(``PENDING_REGISTRATION``) at once, and the app's sandboxed converter settles it, READY with
the package, or FAILED with the reason. Hostile pickles (each ``__reduce__`` does one harmful
thing) fail their version and touch nothing outside the sandbox (docs/security.md)."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from loopml.client import Client
from loopml.faces.context import running_of
from loopml.packaging import load_model
from loopml.registry.packages import fetch_package
from loopml.settings import Settings
from tests.conftest import missing_service
from tests.pip_index import serve_index, wheel
from tests.waiting import eventually

from .test_package import MLMODEL

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    """Skipped without ``bwrap``, failed under ``LOOPML_REQUIRE_SERVICES=1`` (CI installs it)."""
    if shutil.which("bwrap") is None:
        missing_service("bubblewrap (bwrap; apt-get install bubblewrap)")


FRAME = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})


class _Hostile:
    """Unpickling this runs ``code`` (``exec``), as a malicious model's pickle would."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.code,))


# A conversion's wall-clock limit here: 8 s for the tests that accept being stopped by it (an
# endless loop is killed at it whatever the load, in its loop or, loaded, still importing; a
# fork bomb by it or the process limit; the loop burns a core until then, hence not 20 s);
# 300 s for the others, whose conversions take about 5 s on the quiet machine. At 20 s for
# all, a conversion on a machine loaded six times over (the suite's two workers beside
# stress-ng --cpu 2 and a census) was killed while it imported numpy (exit 130) and its
# test failed on the load, not the code.
CONVERT_TIMEOUT_S = 300


@pytest.fixture
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_database_url: str
) -> Settings:
    # A number: the conversion's wall-clock limit; a dict: other mlflow settings.
    param = getattr(request, "param", CONVERT_TIMEOUT_S)
    # register_wait_s 0: create answers PENDING_REGISTRATION at once, as these tests await.
    mlflow = {"convert_timeout_s": CONVERT_TIMEOUT_S, "convert_cpu_s": 30, "register_wait_s": 0}
    mlflow |= param if isinstance(param, dict) else {"convert_timeout_s": param}
    return Settings(
        home=tmp_path / "home",
        database={"url": migrated_database_url},
        artifacts={"root": str(tmp_path / "artifacts")},
        mlflow={**mlflow, "convert_max_processes": 32},
    )


def _run_with(client: Client, http: TestClient, model_bytes: bytes, experiment: str = "sk") -> str:
    exp = http.post("/api/2.0/mlflow/experiments/create", json={"name": experiment}).json()
    run = http.post("/api/2.0/mlflow/runs/create", json={"experiment_id": exp["experiment_id"]})
    run_id: str = run.json()["run"]["info"]["run_id"]
    example = {"columns": ["a", "b"], "data": FRAME.head(5).to_numpy().tolist()}
    client.runs.upload_artifact(run_id, "model/MLmodel", MLMODEL.encode())
    client.runs.upload_artifact(run_id, "model/model.pkl", model_bytes)
    client.runs.upload_artifact(run_id, "model/input_example.json", json.dumps(example).encode())
    return run_id


def _register(http: TestClient, run_id: str, name: str = "sk") -> dict[str, Any]:
    """Register ``runs:/<run>/model`` as MLflow's client does, then wait as it does."""
    body = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    created = http.post("/api/2.0/mlflow/model-versions/create", json=body)
    assert created.status_code == 200, created.text
    return _wait(http, created.json()["model_version"])


def _wait(http: TestClient, version: dict[str, Any], name: str = "sk") -> dict[str, Any]:
    """Poll ``get_model_version`` while it is PENDING_REGISTRATION, as MLflow's client does."""
    params = {"name": name, "version": version["version"]}

    def settled() -> dict[str, Any] | None:
        got = http.get("/api/2.0/mlflow/model-versions/get", params=params).json()
        found: dict[str, Any] = got["model_version"]
        return found if found["status"] != "PENDING_REGISTRATION" else None

    if version["status"] != "PENDING_REGISTRATION":
        return dict(version)
    return eventually(settled, 240, f"{name}/{version['version']} to leave PENDING_REGISTRATION")


def _hostile(client: Client, http: TestClient, code: str) -> dict[str, Any]:
    run_id = _run_with(client, http, pickle.dumps(_Hostile(code)))
    version = _register(http, run_id)
    assert version["status"] == "FAILED_REGISTRATION", version
    return version


def test_an_mlflow_sklearn_model_is_packaged_on_the_server_and_served(
    client: Client, http: TestClient, tmp_path: Path
) -> None:
    model = LogisticRegression().fit(FRAME, (FRAME["a"] > 20).astype(int))
    run_id = _run_with(client, http, pickle.dumps(model))
    body = {"name": "sk", "source": f"runs:/{run_id}/model", "run_id": run_id}
    created = http.post("/api/2.0/mlflow/model-versions/create", json=body).json()
    assert created["model_version"]["status"] == "PENDING_REGISTRATION"
    version = _wait(http, created["model_version"])
    assert version["status"] == "READY", version["status_message"]
    assert version["source"].startswith(f"mlflow-artifacts:/runs/{run_id}/loopml-mlflow/")
    events = http.get("/api/v1/events", params={"type": "model.version.*"}).json()["items"]
    kinds = {e["type"] for e in events if e["subject"] == "sk/1"}
    assert {"model.version.registered", "model.version.packaged", "model.version.ready"} <= kinds
    # The package the sandbox made, verified and loaded (never through pickle), predicts what
    # the estimator predicts.
    ctx = running_of(http.app).context
    version_, folder = fetch_package(ctx.store, ctx.artifacts, "default", "sk/1", tmp_path / "p")
    loaded = load_model(folder, manifest_sha256=version_.manifest_sha256)
    np.testing.assert_array_equal(np.asarray(loaded.predict(FRAME)).ravel(), model.predict(FRAME))
    # MLflow's client still loads models:/sk/1 from the MLflow model it came from.
    uri = http.get(
        "/api/2.0/mlflow/model-versions/get-download-uri", params={"name": "sk", "version": "1"}
    )
    assert uri.json() == {"artifact_uri": f"mlflow-artifacts:/runs/{run_id}/model"}


@pytest.mark.parametrize("settings", [{"convert_max_bytes": 1 << 20}], indirect=True)
def test_the_models_requirements_are_installed_in_the_sandbox_under_its_limits(
    client: Client, http: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model's ``requirements.txt`` names a wheel (from the test's own index, over HTTP:
    the sandboxed pip has the network) that unpacks a 2 MiB file, over the sandbox's file
    size limit (``mlflow.convert_max_bytes``, 1 MiB here): the version FAILS with pip's
    error. Before, pip ran as the server's user, outside the sandbox and its limits, and
    the version was READY."""
    with serve_index(tmp_path / "index", monkeypatch) as index:
        big = {"loopml_big/__init__.py": b"", "loopml_big/blob.bin": b"\0" * (2 << 20)}
        wheel(index.folder, "loopml_big", big)
        model = LogisticRegression().fit(FRAME, (FRAME["a"] > 20).astype(int))
        run_id = _run_with(client, http, pickle.dumps(model))
        client.runs.upload_artifact(run_id, "model/requirements.txt", b"loopml-big==1.0\n")
        version = _register(http, run_id)
        assert "/loopml_big-1.0-py3-none-any.whl" in index.asked, index.asked
    assert version["status"] == "FAILED_REGISTRATION", version
    assert "File too large" in version["status_message"], version["status_message"]


@pytest.mark.parametrize("settings", [{"register_wait_s": 60}], indirect=True)
def test_create_answers_with_the_settled_version_when_it_settles_within_the_wait(
    client: Client, http: TestClient
) -> None:
    """Within ``mlflow.register_wait_s``, ``model-versions/create`` answers with the version
    READY (MLflow's client then polls nothing), or FAILED with the reason."""
    model = LogisticRegression().fit(FRAME, (FRAME["a"] > 20).astype(int))
    run_id = _run_with(client, http, pickle.dumps(model))
    body = {"name": "sk", "source": f"runs:/{run_id}/model", "run_id": run_id}
    created = http.post("/api/2.0/mlflow/model-versions/create", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["status"] == "READY", created.json()
    hostile = pickle.dumps(_Hostile("raise SystemExit('refused')"))
    run_id = _run_with(client, http, hostile, experiment="hostile")
    body["run_id"], body["source"] = run_id, f"runs:/{run_id}/model"
    failed = http.post("/api/2.0/mlflow/model-versions/create", json=body).json()
    assert failed["model_version"]["status"] == "FAILED_REGISTRATION", failed
    assert "refused" in failed["model_version"]["status_message"]


def test_a_packaging_version_takes_no_alias(client: Client, http: TestClient) -> None:
    # The converter sleeps first, so the version is surely still PACKAGING.
    run_id = _run_with(client, http, pickle.dumps(_Hostile("import time; time.sleep(3)")))
    body = {"name": "sk", "source": f"runs:/{run_id}/model", "run_id": run_id}
    assert http.post("/api/2.0/mlflow/model-versions/create", json=body).status_code == 200
    alias = {"name": "sk", "alias": "staging", "version": "1"}
    refused = http.post("/api/2.0/mlflow/registered-models/alias", json=alias)
    assert refused.status_code == 409, refused.text
    assert "PACKAGING" in refused.json()["message"]


def test_a_pickle_opening_a_socket_reaches_nothing(client: Client, http: TestClient) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
            "socket.create_connection(('127.0.0.1', 5432), timeout=5)"
        )
        version = _hostile(client, http, code)
        with pytest.raises(TimeoutError):
            server.accept()
    assert "ConnectionRefusedError" in version["status_message"]


def test_a_pickle_writing_outside_its_folder_writes_nothing_there(
    client: Client, http: TestClient, settings: Settings
) -> None:
    outside = Path(f"/tmp/outside-{uuid.uuid4().hex}")
    home_file = settings.home / f"pwned-{uuid.uuid4().hex}"
    code = f"open({str(outside)!r}, 'w').write('x')\nopen({str(home_file)!r}, 'w').write('x')"
    version = _hostile(client, http, code)
    assert not outside.exists()
    assert not home_file.exists()
    # /tmp is the sandbox's own; the home shows only as empty folders leading to the
    # environment, which uid 65534 cannot write.
    assert "Permission denied" in version["status_message"]


def test_a_pickle_reading_the_servers_files_finds_none(
    client: Client, http: TestClient, settings: Settings, tmp_path: Path
) -> None:
    secret = settings.home / "secret.txt"
    secret.write_text("the server's")
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    code = f"print(open({str(secret)!r}).read())"
    if settings.database_url.startswith("sqlite:///"):
        code = f"print(open({str(database)!r}, 'rb').read(16))\n" + code
    version = _hostile(client, http, code)
    assert "the server's" not in version["status_message"]
    assert "SQLite format" not in version["status_message"]
    assert "No such file or directory" in version["status_message"]


@pytest.mark.parametrize("settings", [8], indirect=True, ids=["timeout-8s"])
def test_a_fork_bomb_is_stopped_and_the_host_is_fine(client: Client, http: TestClient) -> None:
    # The sandbox, not the test's patience, ended it: the version failed (``_hostile``) with
    # the process limit's error or the converter's own time limit in its message.
    version = _hostile(client, http, "import os\nwhile True:\n    os.fork()")
    message = version["status_message"]
    assert "Resource temporarily unavailable" in message or "ran past its limit" in message, message
    # The host still starts processes (the bomb's are gone with its sandbox).
    assert subprocess.run(["true"], check=False).returncode == 0


@pytest.mark.parametrize("settings", [8], indirect=True, ids=["timeout-8s"])
def test_an_endless_loop_is_killed_at_the_timeout(
    client: Client, http: TestClient, settings: Settings
) -> None:
    # Killed by the converter's limit (its message says so), not left running.
    version = _hostile(client, http, "while True:\n    pass")
    assert settings.mlflow.convert_timeout_s == 8
    assert "ran past its limit of 8 s" in version["status_message"], version["status_message"]


def test_without_bubblewrap_the_version_fails_and_nothing_runs(
    client: Client, http: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "ran"
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    version = _hostile(client, http, f"open({str(canary)!r}, 'w').write('x')")
    assert "bubblewrap (bwrap) is not installed" in version["status_message"]
    assert not canary.exists()


def test_a_version_a_stopped_server_left_packaging_is_converted_again(
    client: Client, http: TestClient
) -> None:
    """A version this host's stopped server left PACKAGING (its packager process is gone)
    is taken over and converted: READY; one a live process is packaging is left alone."""
    from datetime import timedelta

    from sqlalchemy import update

    from loopml.registry import mlflow_packaging, mlflow_recovery
    from loopml.store.orm import LoggedModelRow

    ctx = running_of(http.app).context
    assert ctx.packager is not None
    model = LogisticRegression().fit(FRAME, (FRAME["a"] > 20).astype(int))
    run_id = _run_with(client, http, pickle.dumps(model))
    version, _ = mlflow_packaging.accept(
        ctx.store,
        project="default",
        model_name="left",
        run_id=run_id,
        mlflow_source="model",
        source_prefix="rebuilt by the recovery from mlflow_source",
        actor="t",
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        for pid, expected in ((alive.pid, 0), (gone.pid, 1)):
            packager = f"{socket.gethostname()}:{pid}"
            with ctx.store.session() as session:
                session.execute(
                    update(LoggedModelRow)
                    .where(LoggedModelRow.id == version.logged_model_id)
                    .values(
                        summary={"from": "mlflow", "mlflow_source": "model", "packager": packager}
                    )
                )
            taken = mlflow_recovery.requeue_orphans(
                ctx.packager, stale_after=timedelta(hours=1), at_start=True
            )
            assert taken == expected
    finally:
        alive.kill()
        alive.wait()
    ready = _wait(http, {"status": "PENDING_REGISTRATION", "version": "1"}, name="left")
    assert ready["status"] == "READY", ready["status_message"]
