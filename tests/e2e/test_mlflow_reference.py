"""The MLflow compatibility suite against MLflow's own server: the same example scripts, run
by the same real clients (2.x and 3.x), checked by the same expectations
(``mlflow_expected.py``) as against loopml in ``test_mlflow_client.py``. An expectation that
MLflow's server does not meet is a wrong test, so this checks the suite itself.

MLflow's server (the full ``mlflow`` package, in a virtual environment of its own kept beside
the clients') runs on a SQLite file with proxied artifacts. Where loopml differs on purpose,
the test states MLflow's behaviour and names the difference (docs/mlflow.md lists them).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.waiting import eventually

from .conftest import RunningServer, mlflow_cache_folder
from .mlflow_expected import (
    check_experiments,
    check_registry_search,
    check_registry_tour,
    check_resume,
    check_tracking,
    check_tracking_tour,
)
from .test_mlflow_client import (
    CLIENTS,
    ROWS,
    _script,
    _venv,
    _version,
    mlflow_python,  # noqa: F401 (the clients' fixture, shared)
)

pytestmark = [pytest.mark.e2e, pytest.mark.mlflow, pytest.mark.timeout(600)]

SERVER_VERSION = CLIENTS["3.x"]


@pytest.fixture(scope="module")
def reference(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``mlflow server`` on a free port, a SQLite store and proxied artifacts in a fresh
    folder; its process group is stopped after the module."""
    cache = mlflow_cache_folder(request.config)
    cache.mkdir(parents=True, exist_ok=True)
    name = f"server-{SERVER_VERSION}"
    with (cache / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = _venv(cache, name, (f"mlflow=={SERVER_VERSION}",))
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    command = [
        str(python),
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
    ]
    started = time.monotonic()
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            eventually(
                lambda: (
                    process.poll() is not None
                    or httpx.get(f"{url}/health", timeout=2).status_code == 200
                ),
                120,
                "the mlflow server to answer /health",
                interval_s=0.3,
                describe=(home / "server.log").read_text,
            )
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited:\n{(home / 'server.log').read_text()}")
            yield RunningServer(url, home, process, time.monotonic() - started, env)
        finally:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)


def test_tracking_search_and_experiments_as_on_loopml(
    mlflow_python: Path,  # noqa: F811
    reference: RunningServer,
) -> None:
    version = _version(mlflow_python).replace(".", "")
    experiment = f"ref-e2e-{version}"
    runs = [_script(mlflow_python, reference, "track.py", experiment, lr) for lr in ("0.1", "0.3")]
    check_tracking(_script(mlflow_python, reference, "inspect_runs.py", experiment), runs)
    check_resume(_script(mlflow_python, reference, "resume_search.py", f"ref-resume-{version}"))
    prefix = f"refexp{version}"
    check_experiments(_script(mlflow_python, reference, "experiments.py", prefix), prefix)


def test_registry_as_on_loopml_but_the_gate_and_stages(
    mlflow_python: Path,  # noqa: F811
    reference: RunningServer,
) -> None:
    version = _version(mlflow_python)
    logged = _script(mlflow_python, reference, "log_sklearn.py", f"ref-sk-{version}")
    run_id = str(logged["run_id"])
    prefix = f"refrs{version.replace('.', '')}"
    seen = _script(mlflow_python, reference, "registry_search.py", run_id, "model", prefix)
    # MLflow 3's client registers the model it logged by its models:/<id> source.
    check_registry_search(seen, prefix, source=version.startswith("2."))

    # No gate on MLflow's server: the alias moves at once (loopml refuses `champion` until
    # the gate passed the version), and the client loads its own model back.
    model = f"refsk-{version.replace('.', '-')}"
    registered = _script(mlflow_python, reference, "register.py", run_id, "model", model)
    assert (registered["version"], registered["status"]) == ("1", "READY")
    assert registered["refused"] is None
    promoted = _script(mlflow_python, reference, "promote.py", model, "1")
    assert (promoted["run_id"], promoted["aliases"]) == (run_id, ["champion"])
    loaded = _script(mlflow_python, reference, "load_model.py", model, json.dumps(ROWS))
    assert loaded["predictions"] == [0.0, 1.0, 1.0]
    assert "sklearn" in list(loaded["flavors"])  # type: ignore[call-overload]

    # Stages are MLflow's own there: no alias, Production without a gate, and (unlike
    # loopml's one version a stage) moving a version in leaves the others where they were.
    churn = f"{prefix}-churn"
    staged = _script(mlflow_python, reference, "stages.py", churn, "1", "Staging")
    assert (staged["stage"], staged["aliases"]) == ("Staging", [])
    assert staged["latest"] == {"None": ["2"], "Staging": ["1"], "Production": [], "Archived": []}
    promoted = _script(mlflow_python, reference, "stages.py", churn, "1", "Production")
    assert (promoted["stage"], promoted["aliases"]) == ("Production", [])
    assert promoted["latest"]["Production"] == ["1"]  # type: ignore[index]
    archived = _script(mlflow_python, reference, "stages.py", churn, "2", "Archived")
    assert archived["latest"] == {
        "None": [],
        "Staging": [],
        "Production": ["1"],
        "Archived": ["2"],
    }


def test_the_tours_token_uri_and_log_and_register_as_on_loopml(
    mlflow_python: Path,  # noqa: F811
    reference: RunningServer,
) -> None:
    """What ``test_mlflow_coverage.py`` and ``test_mlflow_client.py`` run against loopml:
    the tour scripts, a tracking token (MLflow's server without authentication ignores it;
    the client still sends it) and ``log_model(registered_model_name=...)``."""
    version = _version(mlflow_python)
    short = version.replace(".", "")
    prefix = f"reftour{short}"
    seen = _script(mlflow_python, reference, "tracking_tour.py", prefix)
    check_tracking_tour(seen, prefix, three=version.startswith("3."))
    logged = _script(mlflow_python, reference, "log_sklearn.py", f"ref-rt-{version}")
    prefix = f"refrt{short}"
    seen = _script(
        mlflow_python, reference, "registry_tour.py", str(logged["run_id"]), "model", prefix
    )
    check_registry_tour(seen, prefix)

    env = {"MLFLOW_TRACKING_URI": reference.url, "MLFLOW_TRACKING_TOKEN": "lm_not-checked-here"}
    experiment = f"ref-token-{short}"
    runs = [
        _script(mlflow_python, reference, "track.py", experiment, lr, env=env)
        for lr in ("0.1", "0.3")
    ]
    check_tracking(_script(mlflow_python, reference, "inspect_runs.py", experiment, env=env), runs)

    model = f"refreg-{short}"
    seen = _script(
        mlflow_python, reference, "log_and_register.py", f"ref-{model}", model, json.dumps(ROWS)
    )
    assert seen["statuses"] == ["READY", "READY"]


def test_mlflow_3_logged_models_as_on_loopml_but_packaging(
    mlflow_python: Path,  # noqa: F811
    reference: RunningServer,
    tmp_path: Path,
) -> None:
    """The logged-models scripts. MLflow's server registers any logged model as it is; loopml
    packages an MLflow-format one in its sandbox, so the fake pickle of ``logged_models.py``
    FAILS there and is READY here."""
    if _version(mlflow_python).startswith("2."):
        pytest.skip("/logged-models is MLflow 3's")
    seen = _script(mlflow_python, reference, "logged_models.py", "ref-lm", "ref-lm-model")
    assert seen["found"] == [seen["model_id"]]
    assert seen["status"] == "READY"
    assert seen["params"] == {"depth": "3", "lr": "0.1"}
    assert seen["tags"] == {"team": "risk"}
    assert seen["source_run_id"] == seen["run_id"]
    assert seen["files"] == ["MLmodel", "model.pkl"]
    assert seen["refused"] is None

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from loopml.packaging import package_model

    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    estimator = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    package = package_model(estimator, tmp_path / "package", sample=frame)
    seen = _script(
        mlflow_python, reference, "logged_model_metrics.py", "ref-lmm", "ref-lmm", str(package.path)
    )
    assert seen["metrics"] == [["acc", 0.75, 0], ["acc", 0.875, 1]]
    assert seen["run_metrics"] == {"acc": 0.875}
    assert seen["registered"] == {"version": "1", "status": "READY"}
