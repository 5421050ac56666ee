"""A version left PACKAGING by a server that stopped is converted again, by real ``loopml up``
processes on a PostgreSQL database (a fresh schema per test): at the next start of a server
on the same host, and from another server's housekeeping when the one packaging it (on
another host sharing the database) has not been seen for ``mlflow.convert_stale_s``."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import update

from loopml.core.clock import utcnow
from loopml.registry import mlflow_packaging
from loopml.store import MetadataStore
from loopml.store.orm import LoggedModelRow
from tests.conftest import missing_service
from tests.unit.api.mlflow.test_package import MLMODEL
from tests.waiting import REQUEST_GUARD_S, eventually

from .conftest import RunningServer, running_server

# Hang guards, not checks (as _settled's deadline): a first conversion in a fresh home builds
# the model's environment with pip in the sandbox, minutes with both cores loaded.
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(900)]

FRAME = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
GOOD = pickle.dumps(LogisticRegression().fit(FRAME, (FRAME["a"] > 20).astype(int)))


class _Sleeps:
    """Unpickling this sleeps, holding the converter (one worker) while others queue."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, ("import time; time.sleep(600)",))


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    if shutil.which("bwrap") is None:
        missing_service("bubblewrap (bwrap; apt-get install bubblewrap)")


def _run_with_model(server: RunningServer, model_bytes: bytes) -> str:
    api = f"{server.url}/api/2.0/mlflow"
    exp = httpx.post(
        f"{api}/experiments/create",
        json={"name": f"pk-{uuid.uuid4().hex[:8]}"},
        timeout=REQUEST_GUARD_S,
    )
    exp_id = exp.json()["experiment_id"]
    run = httpx.post(f"{api}/runs/create", json={"experiment_id": exp_id}, timeout=REQUEST_GUARD_S)
    run_id: str = run.json()["run"]["info"]["run_id"]
    example = {"columns": ["a", "b"], "data": FRAME.head(5).to_numpy().tolist()}
    base = f"{server.url}/api/v1/projects/default/runs/{run_id}/artifacts/model"
    for name, data in (
        ("MLmodel", MLMODEL.encode()),
        ("model.pkl", model_bytes),
        ("input_example.json", json.dumps(example).encode()),
    ):
        assert httpx.put(f"{base}/{name}", content=data, timeout=REQUEST_GUARD_S).status_code == 201
    return run_id


def _register(server: RunningServer, run_id: str, name: str) -> None:
    body = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    created = httpx.post(
        f"{server.url}/api/2.0/mlflow/model-versions/create", json=body, timeout=REQUEST_GUARD_S
    )
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["status"] == "PENDING_REGISTRATION"


def _version(server: RunningServer, name: str, version: int = 1) -> dict[str, Any]:
    url = f"{server.url}/api/v1/projects/default/models/{name}/versions/{version}"
    answer: dict[str, Any] = httpx.get(url, timeout=REQUEST_GUARD_S).json()
    return answer


def _settled(server: RunningServer, name: str, timeout: float = 400) -> dict[str, Any]:
    return eventually(
        lambda: (found := _version(server, name))["status"] != "PACKAGING" and found,
        timeout,
        f"{name}/1 to leave PACKAGING",
        interval_s=0.5,
    )


def test_a_restarted_server_converts_again_what_it_left_packaging(
    tmp_path: Path, postgres_url: str
) -> None:
    """Killed (SIGKILL) with one version converting and one queued behind it, the server's
    next start converts both again: the good model becomes READY, the sleeper FAILS by its
    time limit, as a first run would have settled them."""
    home = tmp_path / "home"
    home.mkdir()
    # Create answers at once (PENDING_REGISTRATION), leaving the conversion to be cut short.
    env = {
        "LOOPML_DATABASE_URL": postgres_url,
        "LOOPML_MLFLOW_CONVERT_WORKERS": "1",
        "LOOPML_MLFLOW_REGISTER_WAIT_S": "0",
    }
    with running_server(home, env, own_group=True) as first:
        sleeper = _run_with_model(first, pickle.dumps(_Sleeps()))
        good = _run_with_model(first, GOOD)
        _register(first, sleeper, "slow")
        _register(first, good, "good")
        time.sleep(3)  # the sleeper is in the converter, "good" waits behind it
        assert _version(first, "good")["status"] == "PACKAGING"
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=20)

    env.update(LOOPML_MLFLOW_CONVERT_WORKERS="2", LOOPML_MLFLOW_CONVERT_TIMEOUT_S="30")
    with running_server(home, env) as second:
        ready = _settled(second, "good")
        assert ready["status"] == "READY", ready["status_message"]
        assert ready["manifest_sha256"]
        slow = _settled(second, "slow")
        assert slow["status"] == "FAILED"
        assert "ran past its limit of 30 s" in slow["status_message"]
        events = httpx.get(
            f"{second.url}/api/v1/events",
            params={"type": "model.version.*"},
            timeout=REQUEST_GUARD_S,
        )
        kinds = [e["type"] for e in events.json()["items"] if e["subject"] == "good/1"]
        assert "model.version.ready" in kinds
        assert "model.version.packaged" in kinds


def _claimed_elsewhere(url: str, run_id: str, name: str, seen_ago: timedelta) -> None:
    """A version accepted for packaging by a server on another host (loopml's own
    ``accept``, on the shared database), last seen ``seen_ago``."""
    store = MetadataStore(url)
    try:
        version, _ = mlflow_packaging.accept(
            store,
            project="default",
            model_name=name,
            run_id=run_id,
            mlflow_source="model",
            source_prefix="unused",
            actor="elsewhere",
        )
        summary = {
            "from": "mlflow",
            "mlflow_source": "model",
            "packager": "another-host.example:4242",
            "packager_seen": (utcnow() - seen_ago).isoformat(),
        }
        with store.session() as session:
            session.execute(
                update(LoggedModelRow)
                .where(LoggedModelRow.id == version.logged_model_id)
                .values(summary=summary)
            )
    finally:
        store.dispose()


def test_housekeeping_takes_over_a_version_another_host_left_packaging(
    tmp_path: Path, postgres_url: str
) -> None:
    """Versions another host's server accepted: the one it has not marked seen for over
    ``mlflow.convert_stale_s`` is converted here and READY; the one it saw a moment ago is
    left to it until that much time passed without a sign of it, then converted too."""
    env = {
        "LOOPML_DATABASE_URL": postgres_url,
        "LOOPML_SERVER_MAINTENANCE_INTERVAL_S": "1",
        "LOOPML_MLFLOW_CONVERT_STALE_S": "30",
    }
    (tmp_path / "home").mkdir()
    with running_server(tmp_path / "home", env) as server:
        run_id = _run_with_model(server, GOOD)
        _claimed_elsewhere(postgres_url, run_id, "stale", timedelta(hours=1))
        started = time.monotonic()
        _claimed_elsewhere(postgres_url, run_id, "fresh", timedelta(0))
        ready = _settled(server, "stale")
        assert ready["status"] == "READY", ready["status_message"]
        # Taken over only once its server was unseen for 30 s: read the clock after the
        # answer, so a slow answer on a loaded machine cannot make an early read look late.
        fresh_then = _version(server, "fresh")
        read_s = time.monotonic() - started
        if fresh_then["status"] != "PACKAGING":
            assert read_s >= 30, (read_s, fresh_then)
        fresh = _settled(server, "fresh")
        assert fresh["status"] == "READY", fresh
        assert time.monotonic() - started >= 30
