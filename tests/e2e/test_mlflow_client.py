"""The real ``mlflow`` client (``mlflow-skinny``, the current 2.x and 3.x) runs unchanged
example scripts against a real ``loopml up``; what it logged is then read through loopml's
own API.

Each client version lives in its own virtual environment, made once and kept under pytest's
cache folder (``.pytest_cache/d/mlflow-clients``, or the system's temporary directory when
the cache plugin is off), with scikit-learn, pandas and skops for the
``mlflow.sklearn.log_model`` script: 150 s for mlflow-skinny alone per version on the busy
2-core machine where it was written (load average 14), nothing on later runs. Where PyPI
cannot be reached the tests skip (and fail when ``LOOPML_REQUIRE_SERVICES=1``).

Each script runs in a process of its own, forked from one per client that imported MLflow,
pandas and scikit-learn once (``mlflow_processes.py``): the import was half these tests'
time, and a forked child starts from the state the import left, never another script's.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopml.core.mlflow_models import tracking_uri
from tests.conftest import missing_service
from tests.waiting import REQUEST_GUARD_S

from . import mlflow_processes
from .conftest import RunningServer, mlflow_cache_folder, running_server
from .mlflow_expected import (
    check_experiments,
    check_registry_search,
    check_resume,
    check_tracking,
)
from .mlflow_inventory import check_calls

# A real mlflow client script imports mlflow (seconds) and logs through the API: on a busy
# 2-core CI machine one test took over the suite's default 120 s.
pytestmark = [pytest.mark.e2e, pytest.mark.mlflow, pytest.mark.timeout(420)]

CLIENTS = {"2.x": "2.22.5", "3.x": "3.17.2"}
# What the example scripts import besides mlflow: mlflow.sklearn.log_model needs these.
EXTRAS = ("scikit-learn", "pandas", "skops")
EXAMPLES = Path(__file__).parent / "mlflow_examples"
RECORDER = Path(__file__).parent / "mlflow_record.py"


def _venv(cache: Path, name: str, packages: tuple[str, ...]) -> Path:
    """The interpreter of ``cache/name``, a virtual environment holding ``packages``, made
    once (a marker names what it holds)."""
    folder = cache / name
    python = folder / "bin" / "python"
    marker = folder / "installed"
    wanted = " ".join(packages)
    if marker.exists() and marker.read_text().startswith(wanted):
        return python
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    done = _install(python, wanted.split())
    if done.returncode != 0:
        missing_service(f"PyPI ({' '.join(done.args[:3])} ... {wanted}): {done.stderr[-500:]}")
    marker.write_text(f"{wanted}\n{time.monotonic() - started:.0f} s\n")
    return python


def _install(python: Path, packages: list[str]) -> subprocess.CompletedProcess[str]:
    """Install ``packages`` into ``python``'s environment: with uv, a dev tool, in seconds
    (pip took 3.5 minutes of a loaded CI machine for one client); with pip where uv is
    absent or failed (its own index settings, say)."""
    commands = [[str(python), "-m", "pip", "install", "--quiet", *packages]]
    try:
        from uv import find_uv_bin
    except ImportError:
        pass
    else:
        uv = [find_uv_bin(), "pip", "install", "--quiet", "--python", str(python), *packages]
        commands.insert(0, uv)
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode == 0:
            break
    return done


@pytest.fixture(scope="session", params=sorted(CLIENTS), ids=lambda key: f"mlflow-{key}")
def mlflow_python(request: pytest.FixtureRequest) -> Path:
    """The interpreter of a virtual environment holding ``mlflow-skinny`` at that version."""
    version = CLIENTS[request.param]
    cache = mlflow_cache_folder(request.config)
    cache.mkdir(parents=True, exist_ok=True)
    # One maker per version at a time (parallel test workers share the folder).
    with (cache / f"{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _venv(cache, version, (f"mlflow-skinny=={version}", *EXTRAS))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("home")) as running:
        yield running


def _version(python: Path) -> str:
    return python.parent.parent.name


def _script(
    python: Path, server: RunningServer, name: str, *args: str, env: dict[str, str] | None = None
) -> dict[str, object]:
    """Run an example script, its MLflow calls recorded (``mlflow_record.py``); ``env``
    replaces the tracking URI (the server's root) and adds to the server's environment. The
    calls the inventory lists for the script must all have been made."""
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "calls.json"
        done = mlflow_processes.run(
            python,
            [str(RECORDER), str(record), str(EXAMPLES / name), *args],
            env={**server.env, "MLFLOW_TRACKING_URI": server.url, **(env or {})},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        recorded = json.loads(record.read_text())
    check_calls(name, recorded["public"], recorded["calls"])
    # MLflow prints links to its own web UI after a run ends; the script's answer is the
    # one JSON line.
    line = next(row for row in done.stdout.splitlines() if row.startswith("{"))
    answer: dict[str, object] = json.loads(line)
    return answer


def test_tracking_code_logs_to_loopml_unchanged(mlflow_python: Path, server: RunningServer) -> None:
    experiment = f"e2e-{_version(mlflow_python)}"
    runs = [_script(mlflow_python, server, "track.py", experiment, lr) for lr in ("0.1", "0.3")]
    check_tracking(_script(mlflow_python, server, "inspect_runs.py", experiment), runs)

    # The same run through loopml's own API and CLI.
    run_id = str(runs[0]["run_id"])
    mine = httpx.get(
        f"{server.url}/api/v1/projects/default/runs/{run_id}", timeout=REQUEST_GUARD_S
    ).json()
    assert mine["experiment"] == experiment
    assert mine["status"] == "FINISHED"
    assert mine["params"]["model"] == "gbm"
    assert mine["metrics"]["loss"] == pytest.approx(0.1 / 5)
    shown = server.cli("runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "lr-0.1" in shown.stdout


def _log_loopml_model(server: RunningServer, run_id: str, tmp_path: Path) -> None:
    """What loopml.log_model does for a run: package a real model, upload, record it."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from loopml.packaging import package_model

    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    model = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    package = package_model(model, tmp_path / "package", sample=frame)
    base = f"{server.url}/api/v1/projects/default/runs/{run_id}"
    for file in sorted(package.path.iterdir()):
        put = httpx.put(
            f"{base}/artifacts/loopml-model/{file.name}",
            content=file.read_bytes(),
            timeout=REQUEST_GUARD_S,
        )
        assert put.status_code == 201, put.text
    manifest = package.manifest
    recorded = httpx.post(
        f"{base}/models",
        json={
            "path": "loopml-model",
            "flavor": manifest.flavor,
            "format": manifest.primary,
            "manifest_sha256": package.manifest_sha256,
            "signature": manifest.signature.model_dump(mode="json"),
        },
        timeout=REQUEST_GUARD_S,
    )
    assert recorded.status_code == 201, recorded.text


def _pass_gate(server: RunningServer, model: str, version: str) -> None:
    base = f"{server.url}/api/v1/projects/default/models/{model}/versions/{version}"
    report = {
        "eval_hash": "ab" * 16,
        "task": "classification",
        "primary_metric": "accuracy",
        "metrics": {"accuracy": 0.9},
        "rows": 100,
    }
    saved = httpx.post(f"{base}/evaluations", json=report, timeout=REQUEST_GUARD_S)
    assert saved.status_code == 201, saved.text
    judged = httpx.post(f"{base}/gate", json={}, timeout=REQUEST_GUARD_S)
    assert judged.status_code == 201, judged.text
    assert judged.json()["passed"] is True


def test_registry_code_goes_through_the_gate(
    mlflow_python: Path, server: RunningServer, tmp_path: Path
) -> None:
    experiment = f"reg-{_version(mlflow_python)}"
    run = _script(mlflow_python, server, "track.py", experiment, "0.2")
    run_id = str(run["run_id"])
    model = f"churn-{_version(mlflow_python).replace('.', '-')}"

    refused = mlflow_processes.run(
        mlflow_python,
        [str(EXAMPLES / "register.py"), run_id, "reports", model],
        env={**server.env, "MLFLOW_TRACKING_URI": server.url},
        timeout=120,
    )
    assert refused.returncode != 0
    # 2.x asks the server, which answers that the run logged no model there; 3.x finds no
    # logged model of that name itself.
    assert "logged no model" in refused.stderr or "Unable to find a logged_model" in refused.stderr

    _log_loopml_model(server, run_id, tmp_path)
    registered = _script(mlflow_python, server, "register.py", run_id, "loopml-model", model)
    assert registered["version"] == "1"
    assert registered["status"] == "READY"
    gate = registered["refused"]
    assert isinstance(gate, dict)
    assert gate["code"] == "RESOURCE_CONFLICT"
    assert "gate has not judged it" in str(gate["message"])

    _pass_gate(server, model, "1")
    promoted = _script(mlflow_python, server, "promote.py", model, "1")
    assert promoted["version"] == "1"
    assert promoted["run_id"] == run_id
    assert promoted["aliases"] == ["champion"]
    resolved = httpx.get(
        f"{server.url}/api/v1/projects/default/model-refs/{model}@champion", timeout=REQUEST_GUARD_S
    )
    assert resolved.json()["version"] == 1
    # A package loopml made from no MLflow model: MLflow's client has nothing to load, and
    # is told what to use instead.
    loaded = _script(mlflow_python, server, "load_model.py", model, json.dumps(ROWS))
    refused = loaded["refused"]
    assert isinstance(refused, dict)
    assert refused["code"] == "INVALID_PARAMETER_VALUE"
    assert "was not packaged from an MLflow-format model" in str(refused["message"])
    assert "loopml deploy" in str(refused["message"])

    # The version MLflow's client registered and promoted is deployed with loopml, on the
    # alias MLflow set, and answers the Open Inference Protocol.
    assert _deploy_and_predict(server, model) == [0, 1, 1]


ROWS = {"a": [2.0, 35.0, 30.0], "b": [2.0, 0.0, 6.0]}


def _deploy_and_predict(server: RunningServer, model: str) -> list[float]:
    """Deploy ``model@champion`` with loopml and call its Open Inference Protocol URL on
    ``ROWS``; the deployment is deleted after."""
    deployed = server.cli("deploy", f"{model}@champion", "--name", model, "--replicas", "1")
    assert deployed.returncode == 0, deployed.stderr
    assert "ready" in deployed.stdout
    body = {
        "inputs": [
            {"name": col, "shape": [len(data)], "datatype": "FP64", "data": data}
            for col, data in ROWS.items()
        ]
    }
    try:
        answer = httpx.post(
            f"{server.url}/v2/models/{model}/infer",
            json=body,
            trust_env=False,
            timeout=REQUEST_GUARD_S,
        )
        assert answer.status_code == 200, answer.text
        inferred = answer.json()
        assert (inferred["model_name"], inferred["model_version"]) == (model, "1")
        predict = next(out for out in inferred["outputs"] if out["name"] == "predict")
        return [float(value) for value in predict["data"]]
    finally:
        assert server.cli("deployments", "delete", model, "--yes").returncode == 0


def test_mlflow_3_logged_models_are_recorded_and_not_registered(
    mlflow_python: Path, server: RunningServer
) -> None:
    if _version(mlflow_python).startswith("2."):
        pytest.skip("/logged-models is MLflow 3's")
    seen = _script(mlflow_python, server, "logged_models.py", "lm-e2e", "lm-model")
    assert seen["found"] == [seen["model_id"]]
    assert seen["status"] == "READY"
    assert seen["params"] == {"depth": "3", "lr": "0.1"}
    assert seen["tags"] == {"team": "risk"}
    assert seen["source_run_id"] == seen["run_id"]
    assert seen["files"] == ["MLmodel", "model.pkl"]
    # Accepted and packaged on the server; this one has no sklearn flavour, so its version
    # FAILS with the converter's reason, which the waiting client raises.
    refused = seen["refused"]
    assert isinstance(refused, dict)
    assert "no sklearn flavour" in str(refused["message"])
    versions = httpx.get(
        f"{server.url}/api/v1/projects/default/models/lm-model/versions", timeout=REQUEST_GUARD_S
    )
    assert [v["status"] for v in versions.json()["items"]] == ["FAILED"]


def test_log_model_with_registered_model_name_is_packaged_on_the_server(
    mlflow_python: Path, server: RunningServer
) -> None:
    """``log_model(registered_model_name=...)`` and ``create_model_version(source=runs:/...)``:
    PACKAGING, then READY once the sandboxed converter made the package; served, it predicts
    what the estimator did."""
    model = f"reg-{_version(mlflow_python).replace('.', '-')}"
    rows = json.dumps(ROWS)
    seen = _script(mlflow_python, server, "log_and_register.py", f"exp-{model}", model, rows)
    assert seen["statuses"] == ["READY", "READY"]
    _pass_gate(server, model, "1")
    assert _script(mlflow_python, server, "promote.py", model, "1")["aliases"] == ["champion"]
    assert _deploy_and_predict(server, model) == pytest.approx(seen["predictions"])


def test_an_mlflow_sklearn_model_is_packaged_client_side_then_registered(
    mlflow_python: Path, server: RunningServer
) -> None:
    experiment = f"sk-{_version(mlflow_python)}"
    logged = _script(mlflow_python, server, "log_sklearn.py", experiment)
    run_id = str(logged["run_id"])
    model = f"sk-{_version(mlflow_python).replace('.', '-')}"
    # MLflow 2 keeps the model in the run's folder; MLflow 3 apart, as models:/<id>.
    uri = str(logged["model_uri"])
    source = uri if uri.startswith("models:/") else "model"
    packaged = server.cli("runs", "package-mlflow", run_id, "--source", source)
    assert packaged.returncode == 0, packaged.stderr
    assert "packaged" in packaged.stdout
    registered = _script(mlflow_python, server, "register.py", run_id, "loopml-model", model)
    assert registered["status"] == "READY"
    version = httpx.get(
        f"{server.url}/api/v1/projects/default/models/{model}/versions/1", timeout=REQUEST_GUARD_S
    )
    assert version.json()["run_id"] == run_id
    served = httpx.get(
        f"{server.url}/api/v1/projects/default/runs/{run_id}/artifacts/loopml-model/model.onnx",
        timeout=REQUEST_GUARD_S,
    )
    assert served.status_code == 200

    # The alias: refused by the gate, then set once it passed; the client then loads
    # models:/<name>@champion back (its own MLflow model, with its own flavour) and predicts
    # what the version loopml deploys predicts.
    gate = registered["refused"]
    assert isinstance(gate, dict)
    assert gate["code"] == "RESOURCE_CONFLICT"
    _pass_gate(server, model, "1")
    assert _script(mlflow_python, server, "promote.py", model, "1")["aliases"] == ["champion"]
    loaded = _script(mlflow_python, server, "load_model.py", model, json.dumps(ROWS))
    assert "refused" not in loaded, loaded
    assert "sklearn" in list(loaded["flavors"])  # type: ignore[call-overload]
    assert loaded["predictions"] == pytest.approx(_deploy_and_predict(server, model))


ADMIN_PASSWORD = "an mlflow admin passphrase 3"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    """``loopml up`` with authentication on, an admin's token, and a project ``churn``."""
    env = {"LOOPML_AUTH_ENABLED": "true"}
    with running_server(tmp_path_factory.mktemp("auth-home"), env) as running:
        made = running.cli(
            "users", "create-admin", "ml-admin", "--password-stdin", input=f"{ADMIN_PASSWORD}\n"
        )
        assert made.returncode == 0, made.stderr
        login = httpx.post(
            f"{running.url}/api/v1/auth/login",
            json={"user": "ml-admin", "password": ADMIN_PASSWORD},
            timeout=REQUEST_GUARD_S,
        )
        assert login.status_code == 201, login.text
        token = str(login.json()["token"])
        bearer = {"authorization": f"Bearer {token}"}
        project = httpx.post(
            f"{running.url}/api/v1/projects",
            json={"name": "churn"},
            headers=bearer,
            timeout=REQUEST_GUARD_S,
        )
        assert project.status_code == 201, project.text
        yield running, token


def test_a_project_s_tracking_uri_takes_a_loopml_token(
    mlflow_python: Path, auth_server: tuple[RunningServer, str]
) -> None:
    """Unchanged tracking code against project ``churn``'s tracking URI, with
    ``MLFLOW_TRACKING_TOKEN`` a loopml token: refused without it, logged (artifacts too,
    which MLflow's client resolves against the URI's path) with it, in that project."""
    server, token = auth_server
    uri = tracking_uri(server.url, "churn")
    experiment = f"auth-{_version(mlflow_python)}"
    anonymous = mlflow_processes.run(
        mlflow_python,
        [str(EXAMPLES / "track.py"), experiment, "0.1"],
        env={**server.env, "MLFLOW_TRACKING_URI": uri},
        timeout=120,
    )
    assert anonymous.returncode != 0
    assert "UNAUTHENTICATED" in anonymous.stderr, anonymous.stderr[-2000:]

    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_TOKEN": token}
    runs = [
        _script(mlflow_python, server, "track.py", experiment, lr, env=env) for lr in ("0.1", "0.3")
    ]
    seen = _script(mlflow_python, server, "inspect_runs.py", experiment, env=env)
    assert seen["ids"] == [runs[0]["run_id"], runs[1]["run_id"]]
    assert seen["downloaded"] == ["a.csv", "deep/b.csv"]
    assert seen["notes"] == "lr=0.1\n"

    bearer = {"authorization": f"Bearer {token}"}
    base = f"{server.url}/api/v1/projects/churn/runs/{runs[0]['run_id']}"
    mine = httpx.get(base, headers=bearer, timeout=REQUEST_GUARD_S).json()
    assert (mine["project"], mine["experiment"]) == ("churn", experiment)
    notes = httpx.get(f"{base}/artifacts/notes.txt", headers=bearer, timeout=REQUEST_GUARD_S)
    assert notes.content == b"lr=0.1\n"


def test_a_finished_run_resumes_and_runs_are_found_by_name(
    mlflow_python: Path, server: RunningServer
) -> None:
    experiment = f"resume-{_version(mlflow_python)}"
    check_resume(_script(mlflow_python, server, "resume_search.py", experiment))
    events = httpx.get(
        f"{server.url}/api/v1/events", params={"type": "run.resumed"}, timeout=REQUEST_GUARD_S
    )
    assert events.json()["items"], events.text


def test_experiments_take_spaces_tags_and_like(mlflow_python: Path, server: RunningServer) -> None:
    prefix = f"exp{_version(mlflow_python).replace('.', '')}"
    check_experiments(_script(mlflow_python, server, "experiments.py", prefix), prefix)


def test_registry_search_grammar_rename_and_stages(
    mlflow_python: Path, server: RunningServer, tmp_path: Path
) -> None:
    version = _version(mlflow_python)
    prefix = f"rs{version.replace('.', '')}"
    run_id = str(_script(mlflow_python, server, "track.py", f"rs-{version}", "0.2")["run_id"])
    _log_loopml_model(server, run_id, tmp_path)
    seen = _script(mlflow_python, server, "registry_search.py", run_id, "loopml-model", prefix)
    check_registry_search(seen, prefix)
    churn = f"{prefix}-churn"

    # Stages are aliases: Staging moves freely, Production is `champion` behind the gate.
    staged = _script(mlflow_python, server, "stages.py", churn, "1", "Staging")
    assert staged["stage"] == staged["got"] == "Staging"
    assert staged["aliases"] == ["staging"]
    assert staged["latest"] == {"None": ["2"], "Staging": ["1"], "Production": [], "Archived": []}
    refused = _script(mlflow_python, server, "stages.py", churn, "1", "Production")
    assert refused["refused"]["code"] == "RESOURCE_CONFLICT"  # type: ignore[index]
    assert "gate has not judged it" in refused["refused"]["message"]  # type: ignore[index]
    assert refused["got"] == "Staging"
    _pass_gate(server, churn, "1")
    promoted = _script(mlflow_python, server, "stages.py", churn, "1", "Production")
    assert promoted["stage"] == "Production"
    assert promoted["aliases"] == ["champion"]
    assert promoted["latest"]["Production"] == ["1"]  # type: ignore[index]
    assert promoted["latest"]["Staging"] == []  # type: ignore[index]
    archived = _script(mlflow_python, server, "stages.py", churn, "2", "Archived")
    assert archived["stage"] == "Archived"
    assert archived["latest"] == {  # the newest version in no stage: none is left
        "None": [],
        "Staging": [],
        "Production": ["1"],
        "Archived": ["2"],
    }


def test_mlflow_3_logged_model_metrics_and_registration(
    mlflow_python: Path, server: RunningServer, tmp_path: Path
) -> None:
    if _version(mlflow_python).startswith("2."):
        pytest.skip("/logged-models is MLflow 3's")
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from loopml.packaging import package_model

    frame = pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 7})
    estimator = LogisticRegression().fit(frame, (frame["a"] > 20).astype(int))
    package = package_model(estimator, tmp_path / "package", sample=frame)
    seen = _script(
        mlflow_python, server, "logged_model_metrics.py", "lmm-e2e", "lmm", str(package.path)
    )
    assert seen["metrics"] == [["acc", 0.75, 0], ["acc", 0.875, 1]]
    assert seen["run_metrics"] == {"acc": 0.875}
    assert seen["registered"] == {"version": "1", "status": "READY"}
    version = httpx.get(
        f"{server.url}/api/v1/projects/default/models/lmm/versions/1", timeout=REQUEST_GUARD_S
    )
    assert version.json()["status"] == "READY", version.text
