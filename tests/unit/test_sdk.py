"""``loopml.start_run``: embedded on a temporary home, and over HTTP against the in-process
app, with the same code."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import loopml
from loopml.client import Client
from loopml.core.errors import ConflictError, ValidationError
from loopml.core.run_search import RunSearch
from loopml.core.runs import Run
from loopml.settings import Settings
from loopml.store import MetadataStore
from loopml.train import tracking
from loopml.train.tracking._code import capture_code_version
from tests.waiting import eventually

StartRun = Callable[..., loopml.ActiveRun]
GetRun = Callable[[str], Run]


@pytest.fixture(params=["embedded", "http"])
def sdk(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[StartRun, GetRun, Settings]]:
    """``start_run`` bound to one backend, and a way to read a run back."""
    settings = Settings(home=tmp_path / "home")
    if request.param == "embedded":
        store = MetadataStore(settings.database_url)

        def start(*args: object, **kwargs: object) -> loopml.ActiveRun:
            return loopml.start_run(*args, settings=settings, **kwargs)  # type: ignore[arg-type]

        yield start, lambda run_id: tracking.get_run(store, "default", run_id), settings
        store.dispose()
        return
    from loopml.platform import create_api_app

    with TestClient(create_api_app(settings), base_url="http://127.0.0.1") as http:
        client = Client(http=http)

        def start_http(*args: object, **kwargs: object) -> loopml.ActiveRun:
            return loopml.start_run(*args, client=client, **kwargs)  # type: ignore[arg-type]

        yield start_http, lambda run_id: client.runs.get(run_id), settings


def test_a_run_logs_everything_and_finishes(
    sdk: tuple[StartRun, GetRun, Settings], tmp_path: Path
) -> None:
    start, get, _ = sdk
    report = tmp_path / "report.txt"
    report.write_text("all good")
    # The run starts in a git work tree (the test's folder), so its code version is that
    # commit whatever runs the test: under pytest-xdist the entry point is `python -c`, which
    # has no script to hash.
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "report.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    with start("churn", params={"lr": 0.1, "model": "lgbm"}, tags={"team": "risk"}) as run:
        run.log_param("depth", 6)
        run.set_tag("stage", "dev")
        run.log_input("snapshot-42")
        for step in range(2500):  # crosses the 1,000-point batch size twice
            run.log_metrics({"loss": 1 / (step + 1), "acc": step / 2500}, step=step)
        run.log_metric("diverged", float("nan"))
        run.log_artifact(report, artifact_path="reports")
    got = get(run.id)
    assert got.status == "FINISHED"
    assert got.params == {"lr": "0.1", "model": "lgbm", "depth": "6"}
    assert got.tags == {"team": "risk", "stage": "dev"}
    assert got.metrics is not None
    assert got.metrics["loss"] == 1 / 2500
    assert math.isnan(got.metrics["diverged"])
    assert [i.ref for i in got.inputs or []] == ["snapshot-42"]
    assert got.code_version is not None
    assert got.code_version["git_commit"] == commit


def test_an_exception_fails_the_run_and_is_reraised(sdk: tuple[StartRun, GetRun, Settings]) -> None:
    start, get, _ = sdk
    run = start("churn")

    def train() -> None:
        with run:
            run.log_metric("loss", 1.0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train()
    got = get(run.id)
    assert got.status == "FAILED"
    assert got.metrics == {"loss": 1.0}  # buffered points are sent before it ends


def test_keyboard_interrupt_kills_the_run(sdk: tuple[StartRun, GetRun, Settings]) -> None:
    start, get, _ = sdk
    with pytest.raises(KeyboardInterrupt), start("churn") as run:
        raise KeyboardInterrupt
    assert get(run.id).status == "KILLED"


def test_heartbeats_keep_a_run_alive_and_metrics_flush_in_the_background(
    sdk: tuple[StartRun, GetRun, Settings],
) -> None:
    start, get, _ = sdk
    with start("churn", heartbeat_interval_s=0.1, flush_interval_s=0.1) as run:
        first = get(run.id).heartbeat_at
        run.log_metric("loss", 0.5)
        got = eventually(
            lambda: (found := get(run.id)).heartbeat_at > first and found.metrics and found,
            30,
            "a newer heartbeat and the flushed metric",
        )
        assert got.metrics == {"loss": 0.5}, got.metrics


def test_bad_input_is_refused_before_anything_is_sent(
    sdk: tuple[StartRun, GetRun, Settings],
) -> None:
    start, _, _ = sdk
    with pytest.raises(ValidationError, match="invalid log batch"):
        start("churn", params={"bad key!": 1})
    with start("churn") as run:
        with pytest.raises(ValidationError, match="finite or NaN"):
            run.log_metric("loss", float("inf"))
        with pytest.raises(ValidationError, match="must be a number"):
            run.log_metric("loss", "0.5")  # type: ignore[arg-type]
        run.log_param("lr", 0.1)
        with pytest.raises(ConflictError, match="params cannot change"):
            run.log_param("lr", 0.2)


def test_embedded_start_marks_dead_runs_lost(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", tracking={"heartbeat_timeout_s": 1})
    dead = loopml.start_run("churn", settings=settings, heartbeat_interval_s=60)
    dead._pump._stopping.set()  # the process "dies": no more heartbeats, never ended
    time.sleep(2.1)
    with loopml.start_run("churn", settings=settings):
        pass
    store = MetadataStore(settings.database_url)
    assert tracking.get_run(store, "default", dead.id).status == "LOST"
    page = tracking.search_runs(store, "default", RunSearch(status=["FINISHED"]))
    assert len(page.items) == 1
    store.dispose()


def test_loopml_client_url_selects_the_http_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.sdk.backends import EmbeddedBackend, HttpBackend
    from loopml.sdk.tracking import _backend

    assert isinstance(_backend("default", None, None, None), EmbeddedBackend)
    monkeypatch.setenv("LOOPML_CLIENT_URL", "http://127.0.0.1:9")
    assert isinstance(_backend("default", None, None, None), HttpBackend)


def test_code_version_is_the_git_commit_and_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    clean = capture_code_version(repo)
    assert len(str(clean["git_commit"])) == 40
    assert clean["git_dirty"] is False
    (repo / "train.py").write_text("print(2)\n")
    assert capture_code_version(repo)["git_dirty"] is True
    outside = capture_code_version(tmp_path)
    assert "git_commit" not in outside


def test_log_model_uploads_the_package_and_records_it(
    sdk: tuple[StartRun, GetRun, Settings],
) -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from loopml.packaging import MANIFEST_FILE
    from loopml.train.tracking.artifacts import MANIFEST_FILE as RECORDED_MANIFEST

    assert RECORDED_MANIFEST == MANIFEST_FILE
    frame, target = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(frame, target)
    start, _, _ = sdk
    with start("iris") as run:
        logged = run.log_model(model, sample=frame.head(50))
    assert logged.path == "model"
    assert logged.flavor == "sklearn"
    assert logged.format in ("onnx", "skops")
    assert logged.signature["task"] == "classification"
    assert len(logged.manifest_sha256) == 64


@pytest.mark.parametrize("sdk", ["embedded", "http"], indirect=True)
def test_the_first_argument_is_the_experiment_and_name_is_the_run(
    sdk: tuple[StartRun, GetRun, Settings],
) -> None:
    start, get, _ = sdk
    with start(experiment="churn", name="baseline") as named:
        pass
    with start("churn") as unnamed:
        pass

    assert (get(named.id).experiment, get(named.id).name) == ("churn", "baseline")
    assert (get(unnamed.id).experiment, get(unnamed.id).name) == ("churn", f"run-{unnamed.id[:8]}")
