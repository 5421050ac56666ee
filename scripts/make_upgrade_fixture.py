"""Make an upgrade fixture: a ``LOOPML_HOME`` made by this version of loopml, with rows in
every table of its metadata database, for ``tests/e2e/test_upgrade_fixtures.py``.

    PYTHONPATH=src python scripts/make_upgrade_fixture.py [--out tests/fixtures/homes]

writes ``<out>/<version>-<revision>/``: ``home/`` (the SQLite database, the artifact folder
with the lake, the install's secrets) and ``expected.json`` (what the test checks after an
upgrade: the names it must find and the predictions a deployment of the fixture's model
must answer for the same rows). Each release checks in the fixture its own code made, so
every later release is tested upgrading it.

Everything is made through loopml's own faces, as a user would, on a ``loopml up`` with a
fresh home (auth off, the embedded defaults): a project, a table ingested twice (the second
commit checked against a contract, and starting a pipeline run through a trigger), a
dataset, a feature view materialized online, a transform, a run logged through the SDK with a
scikit-learn model packaged to ONNX, registered, evaluated, gated, aliased, tagged and
deployed, predictions (the prediction log and the monitor's windows), a schedule (off), two
alert rules (one fires, and its webhook, where nothing listens, makes a delivery), a codeset, a
Redis stream (paused: it never needs Redis), records appended under an idempotency key, a
model logged through the MLflow REST API, users, a member and a login token. The users'
password is the fixed test value below; the install key in ``secrets/`` is the fixture's own.

Tables that stay empty are printed; none is expected (the script fails otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from loopml import __version__
from loopml.client import Client
from loopml.core.errors import ServiceUnavailableError
from loopml.store import head_revision
from loopml.store.orm import Base

LOOPML = [sys.executable, "-m", "loopml.cli.main"]
PASSWORD = "fixture-admin-password"  # noqa: S105 (a test fixture's, published on purpose)
ADMIN, VIEWER = "ada", "bob"
PROJECT = "fixture"
MODEL, DEPLOYMENT = "iris", "iris-api"
HOME_PARTS = ("loopml.db", "artifacts", "secrets")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    # The monitor reads every second, so its windows hold rows before the server stops.
    env.update(
        LOOPML_HOME=str(home),
        LOOPML_MONITOR_INTERVAL_S="1",
        LOOPML_MONITOR_LAG_S="2",
        LOOPML_MONITOR_WEBHOOK_ALLOW='["127.0.0.1"]',  # the alert's webhook, where nothing listens
        OMP_WAIT_POLICY="passive",
    )
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(home: Path) -> Iterator[str]:
    """``loopml up`` on ``home`` and a free port; yields its URL once it answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*LOOPML, "up", "--port", str(port)], env=_env(home), stdout=log, stderr=log
        )
        try:
            with Client(url, timeout=2) as client:
                deadline = time.monotonic() + 180
                while True:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit((home / "server.log").read_text())
                    try:
                        client.health()
                        break
                    except ServiceUnavailableError:
                        time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=60)


def _cli(home: Path, url: str, *args: str, stdin: str | None = None) -> str:
    env = {**_env(home), "LOOPML_CLIENT_URL": url}
    done = subprocess.run(
        [*LOOPML, *args], env=env, input=stdin, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(f"loopml {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    frame, target = load_iris(return_X_y=True, as_frame=True)
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    return frame, target


PIPELINE = """\
name: snapshot
inputs:
  table: {type: table, default: iris}
steps:
  - {name: validate, uses: validate, with: {table: "${{ inputs.table }}"}}
  - name: snapshot
    uses: snapshot
    with: {dataset: iris_train, from: "${{ steps.validate.outputs.table }}"}
"""


def _tables(client: Client, work: Path) -> str:
    """A table with two versions (the second validated against a contract, and starting
    the pipeline through a trigger), a dataset, a feature view, a transform; returns the
    dataset version's id."""
    frame, target = _iris()
    rows = frame.assign(species=target, user_id=range(len(frame)))
    rows["ts"] = "2026-01-01T00:00:00"
    client.pipelines.apply(PIPELINE, project=PROJECT)
    for part, half in enumerate((rows.iloc[:75], rows.iloc[75:])):
        path = work / f"iris-{part}.csv"
        half.to_csv(path, index=False)
        client.tables.ingest_file(PROJECT, "iris", path, schema={"ts": "timestamp[us]"})
        if part == 0:
            client.tables.set_contract(PROJECT, "iris", {"rows": {"min": 10}})
            client.triggers.create(
                "on-iris",
                pipeline="snapshot",
                on="table.appended",
                where={"table": "iris"},
                project=PROJECT,
            )
    dataset = client.datasets.create(PROJECT, "iris", "iris", split=0.2)
    view = (
        "name: flower_stats\nentities: [user_id]\nevent_time: ts\nttl: 700w\n"
        "source: iris\nfeatures: [sepal_length]\n"
    )
    client.features.apply(view, project=PROJECT)
    client.features.materialize("flower_stats", project=PROJECT)
    client.transforms.define(
        PROJECT, "setosa", sql="SELECT * FROM iris WHERE species = 0", into="setosa"
    )
    client.transforms.apply(PROJECT, "setosa")
    deadline = time.monotonic() + 120
    while not (runs := client.pipelines.runs(pipeline="snapshot", project=PROJECT).items):
        if time.monotonic() > deadline:
            raise SystemExit("the trigger on iris started no pipeline run")
        time.sleep(0.5)
    for run in runs:
        client.pipelines.wait(run.id, timeout_s=600, project=PROJECT)
    return dataset.id


def _model(client: Client, work: Path, dataset: str) -> tuple[str, list[dict[str, float]]]:
    """A run through the SDK with a logistic regression packaged to ONNX, registered,
    evaluated, gated, aliased, tagged and deployed; returns the run and the rows the
    fixture predicts."""
    from sklearn.linear_model import LogisticRegression

    import loopml

    frame, target = _iris()
    with loopml.start_run(experiment="iris", project=PROJECT, client=client) as run:
        run.log_params({"C": 1.0, "max_iter": 300})
        run.set_tag("purpose", "upgrade fixture")
        run.log_input(dataset)
        model = LogisticRegression(max_iter=300).fit(frame, target)
        run.log_metric("accuracy", float(model.score(frame, target)))
        notes = work / "notes.txt"
        notes.write_text("the upgrade fixture's run\n")
        run.log_artifact(notes)
        run.log_model(model, sample=frame.head(50))
    version = client.models.register_version(MODEL, run_id=run.id, project=PROJECT).version
    policy = '{"thresholds": [{"metric": "accuracy", "min": 0.5}]}'
    client.models.set_gate_policy(MODEL, policy, project=PROJECT)
    client.models.evaluate(MODEL, version, dataset="iris", target="species", project=PROJECT)
    client.models.gate(MODEL, version, project=PROJECT)
    client.models.set_alias(MODEL, "champion", version, project=PROJECT)
    client.models.set_tag(MODEL, "team", "fixtures", project=PROJECT)
    client.models.set_tag(MODEL, "stage", "ready", version=version, project=PROJECT)
    client.deployments.create(DEPLOYMENT, f"{MODEL}@champion", project=PROJECT)
    client.deployments.wait(DEPLOYMENT, timeout_s=300, project=PROJECT)
    return run.id, [dict(row) for row in frame.iloc[::30].to_dict("records")]


def _automation(client: Client, url: str, work: Path) -> None:
    """A schedule (off), alert rules, a codeset, a stream (paused), records appended under an
    idempotency key, and a model logged by an MLflow client."""
    client.schedules.create(
        "nightly", pipeline="snapshot", cron="0 3 1 1 *", enabled=False, project=PROJECT
    )
    client.monitoring.create_alert(
        "slow", deployment=DEPLOYMENT, metric="latency_p95_ms", comparator=">",
        threshold=5000.0, project=PROJECT,
    )  # fmt: skip
    # Fires at the monitor's next read: its webhook (nothing listens) makes a delivery.
    client.monitoring.create_alert(
        "busy", deployment=DEPLOYMENT, metric="requests", comparator=">", threshold=0.0,
        webhook="http://127.0.0.1:9/hook", project=PROJECT,
    )  # fmt: skip
    code = work / "code"
    code.mkdir()
    (code / "train.py").write_text("def train(ctx):\n    return {}\n")
    client.codesets.register("trainer", code, project=PROJECT)
    client.streams.create(
        "clicks", source="redis://127.0.0.1:6379/0?stream=fixture-clicks", table="clicks",
        project=PROJECT,
    )  # fmt: skip
    client.streams.pause("clicks", project=PROJECT)
    client.tables.append_records(
        PROJECT, "visits", [{"user_id": 1, "page": "home"}], idempotency_key="fixture-1"
    )
    mlflow = httpx.post(f"{url}/api/2.0/mlflow/logged-models", json={"name": "mlflow-model"})
    mlflow.raise_for_status()


def _users(client: Client, home: Path, url: str) -> str:
    """An admin, a viewer member of the project, and the admin's token; its prefix."""
    _cli(home, url, "users", "create-admin", ADMIN, "--password-stdin", stdin=f"{PASSWORD}\n")
    client.users.create(VIEWER, PASSWORD)
    client.users.set_role(PROJECT, VIEWER, "viewer")
    # A token (with auth off, the only way to make one): a year, so the test finds it live.
    return str(client.login(ADMIN, PASSWORD, expires_in_days=365)["prefix"])


def _empty_tables(database: Path) -> list[str]:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return [
                name
                for name, table in sorted(Base.metadata.tables.items())
                if conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
            ]
    finally:
        engine.dispose()


def _wait_for_rows(database: Path, timeout_s: float) -> list[str]:
    """The tables still empty once every one has rows or ``timeout_s`` passed (the monitor
    and the alerts write on their own ticks)."""
    deadline = time.monotonic() + timeout_s
    while (empty := _empty_tables(database)) and time.monotonic() < deadline:
        time.sleep(1)
    return empty


def make(out: Path) -> Path:
    """Build the fixture under ``out``; returns its folder."""
    with tempfile.TemporaryDirectory(prefix="loopml-fixture-") as tmp:
        work = Path(os.environ.get("LOOPML_FIXTURE_WORK", tmp))
        home = work / "home"
        home.mkdir()
        with _server(home) as url, Client(url, timeout=120) as client:
            client.projects.create(PROJECT, "the upgrade fixture")
            dataset = _tables(client, work)
            run_id, rows = _model(client, work, dataset)
            _automation(client, url, work)
            answers = client.deployments.predict(DEPLOYMENT, rows, project=PROJECT)
            token_prefix = _users(client, home, url)
            empty = _wait_for_rows(home / "loopml.db", 60)
            print(f"tables still empty: {', '.join(empty) or 'none'}", flush=True)
        if empty:
            raise SystemExit(f"tables left empty: {', '.join(empty)}")
        with sqlite3.connect(home / "loopml.db") as db:  # the WAL's pages into the file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        target = out / f"{__version__}-{head_revision()}"
        if target.exists():
            shutil.rmtree(target)
        (target / "home").mkdir(parents=True)
        for part in HOME_PARTS:
            source = home / part
            copy = shutil.copytree if source.is_dir() else shutil.copy2
            copy(source, target / "home" / part)
        expected = {
            "version": __version__,
            "revision": head_revision(),
            "project": PROJECT,
            "run": run_id,
            "model": MODEL,
            "deployment": DEPLOYMENT,
            "users": [ADMIN, VIEWER],
            "token_prefix": token_prefix,
            "password": PASSWORD,
            "rows": rows,
            "predictions": answers["predictions"],
        }
        (target / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        if copied_empty := _empty_tables(target / "home" / "loopml.db"):
            raise SystemExit(f"the copy lost the rows of {', '.join(copied_empty)}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/homes"))
    made = make(parser.parse_args().out)
    size = sum(p.stat().st_size for p in made.rglob("*") if p.is_file())
    print(f"{made}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
