"""The platform ``test_backup_restore.py`` backs up: every kind of object the metadata
schema holds, made through loopml's own faces on a running server (issue 36's list:
projects, tables at several versions, a stream's progress, datasets, runs with artifacts,
models with aliases, a deployment with a canary, pipelines with history, schedules,
triggers, alerts, users and tokens, a feature view in a Redis online store), and the load
that runs while it is backed up (predictions, ingests, and the pipeline runs they trigger).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loopml.client import Client
from tests.unit.deploy.deploy_support import cancer_frame, instances
from tests.waiting import REQUEST_GUARD_S, eventually

from .conftest import RunningServer

ADMIN_PASSWORD = "a backup admin passphrase 7"
REDIS = "redis://127.0.0.1:6379/0"
ROWS = instances(5)
CLICKS = 40
USERS = 5
ENTITIES = [{"user_id": i} for i in range(USERS)]

PIPELINE = """\
name: snap
inputs:
  table: {type: table, default: sales}
steps:
  - {name: validate, uses: validate, with: {table: "${{ inputs.table }}"}}
  - name: snapshot
    uses: snapshot
    with: {dataset: sales_train, from: "${{ steps.validate.outputs.table }}"}
"""

VIEW = """\
name: click_stats
entities: [user_id]
event_time: ts
ttl: 700w
source: clicks
features: [clicks]
"""


def server_env(redis_prefix: str) -> dict[str, str]:
    """The backed-up server's settings: auth on, the online store in Redis under a key
    prefix of this run's own, and a monitor that reads every second (its windows and the
    alert's delivery exist before the backup)."""
    return {
        "LOOPML_AUTH_ENABLED": "true",
        "LOOPML_FEATURES_ONLINE": online_store(redis_prefix),
        "LOOPML_MONITOR_INTERVAL_S": "1",
        "LOOPML_MONITOR_LAG_S": "1",
        "LOOPML_MONITOR_WEBHOOK_ALLOW": '["127.0.0.1"]',
        "LOOPML_MONITOR_WEBHOOK_ATTEMPTS": "1",
    }


def online_store(prefix: str) -> str:
    return json.dumps({"type": "redis", "url": REDIS, "key_prefix": prefix})


def predict(url: str, token: str) -> list[Any]:
    predictions: list[Any] = _post(url, token).json()["predictions"]
    return predictions


def predict_on_the_primary(url: str, token: str) -> None:
    """Predict until version 1, ``churn``'s primary, answered once: the router sends 30 %
    of requests to the canary, and the alert rules judge the primary's windows only (the
    ``busy`` rule fires on its requests)."""
    for _ in range(50):
        if _post(url, token).headers.get("x-loopml-model-version") == "1":
            return
    raise AssertionError("50 predictions and none answered by the primary, version 1")


def _post(url: str, token: str) -> httpx.Response:
    answer = httpx.post(
        f"{url}/deployments/churn/predict",
        json={"instances": ROWS},
        headers={"authorization": f"Bearer {token}"},
        trust_env=False,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer


def ok(done: Any) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return str(done.stdout)


@dataclass
class Built:
    admin_token: str
    client_token: str
    online: list[dict[str, Any]]


def build(server: RunningServer, tmp: Path, redis_prefix: str) -> Built:
    """Every kind of object on ``server``; returns the tokens and the online features."""
    ok(server.cli("users", "create-admin", "ada", "--password-stdin", input=f"{ADMIN_PASSWORD}\n"))
    with Client(server.url, timeout=120) as anonymous:
        admin_token = str(anonymous.login("ada", ADMIN_PASSWORD)["token"])
    server.env["LOOPML_TOKEN"] = admin_token
    took: dict[str, float] = {}
    with Client(server.url, timeout=120, token=admin_token) as client:
        started = time.monotonic()
        dataset = _tables(client, tmp)
        took["tables"] = time.monotonic() - started
        _log_model(server, client, tmp / "pkg")
        _models(client, tmp, dataset)
        took["models"] = time.monotonic() - started
        _automation(client, server.url, admin_token, tmp)
        client.users.create("bob", ADMIN_PASSWORD)
        client.users.set_role("default", "bob", "viewer")
        took["automation"] = time.monotonic() - started
        _pipelines(client, tmp)
        took["pipelines"] = time.monotonic() - started
        online = _features(client, redis_prefix)
        took["features"] = time.monotonic() - started
        # The deployment's replicas and the pipeline's runs started above and got ready
        # meanwhile; a first prediction on the primary lets the monitor write its windows,
        # the rule that fires and its delivery (wait_for_every_table waits for them).
        client.deployments.wait("churn", timeout_s=240)
        predict_on_the_primary(server.url, admin_token)
        took["deployed"] = time.monotonic() - started
        made = client.tokens.create(
            "churn-client", project="default", role="viewer", resource="deployment:churn"
        )
    print(f"\n[build seconds, cumulative] { {k: round(v, 1) for k, v in took.items()} }")
    return Built(admin_token, str(made.token), online)


def _tables(client: Client, tmp: Path) -> str:
    """``sales`` at three versions (the later ones checked against a contract), records
    under an idempotency key, a dataset of labelled rows, a transform."""
    for version in range(3):
        csv = tmp / f"sales{version}.csv"
        csv.write_text("id,amount\n" + "".join(f"{i},{i * 1.5 + version}\n" for i in range(50)))
        client.tables.ingest_file("default", "sales", csv)
        if version == 0:
            client.tables.set_contract("default", "sales", {"rows": {"min": 1}})
    client.tables.append_records("default", "visits", [{"page": "home"}], idempotency_key="v-1")
    frame, target = cancer_frame()
    labelled = tmp / "labelled.csv"
    frame.assign(label=target).to_csv(labelled, index=False)
    client.tables.ingest_file("default", "labelled", labelled)
    dataset = client.datasets.create("default", "labelled", "labelled", split=0.2).id
    client.transforms.define(
        "default", "big", sql="SELECT * FROM sales WHERE amount > 10", into="big"
    )
    client.transforms.apply("default", "big")
    return dataset


def _log_model(server: RunningServer, client: Client, package_dir: Path) -> None:
    """The breast-cancer forest logged to a run in the server's store (as
    ``conftest.log_cancer_model`` does) and registered twice as ``cancer``."""
    from loopml.storage import LocalArtifactStore
    from loopml.store import MetadataStore
    from tests.tracking_rows import log_model, make_run
    from tests.unit.deploy.deploy_support import package_files

    package = package_files(package_dir)
    store = MetadataStore(f"sqlite:///{server.home / 'loopml.db'}")
    try:
        run = make_run(store)
        artifacts = LocalArtifactStore(server.home / "artifacts")
        log_model(store, artifacts, run, files=package.files, manifest=package.manifest)
    finally:
        store.dispose()
    for _ in range(2):
        client.models.register_version("cancer", run_id=run.id)


def _models(client: Client, tmp: Path, dataset: str) -> None:
    """The cancer model's alias, tags, evaluation and gate; a run logged through the SDK
    (params, metrics, tags, an input, an artifact); ``churn`` made to serve version 1 with
    version 2 as its canary (its replicas start while the rest is made)."""
    import loopml

    client.models.set_alias("cancer", "prod", 1)
    client.models.set_tag("cancer", "team", "backup")
    client.models.set_tag("cancer", "stage", "ready", version=1)
    client.models.set_gate_policy("cancer", '{"thresholds": [{"metric": "accuracy", "min": 0.1}]}')
    client.models.evaluate("cancer", 1, dataset="labelled", target="label")
    client.models.gate("cancer", 1)
    with loopml.start_run(experiment="tuning", client=client) as run:
        run.log_params({"C": 1.0})
        run.set_tag("purpose", "backup")
        run.log_metric("accuracy", 0.9)
        run.log_input(dataset)
        notes = tmp / "notes.txt"
        notes.write_text("a run's artifact\n")
        run.log_artifact(notes)
    client.deployments.create("churn", "cancer@prod", canary="cancer/2", canary_percent=30)


def _pipelines(client: Client, tmp: Path) -> None:
    """``snap`` run (its end, its history, is waited for with every table's rows),
    started again by every ingest into ``sales`` (a trigger, fired here once), and a
    schedule (off)."""
    client.pipelines.apply(PIPELINE)
    client.pipelines.run("snap")
    client.triggers.create(
        "on-sales", pipeline="snap", on="table.appended", where={"table": "sales"}
    )
    client.schedules.create("nightly", pipeline="snap", cron="0 3 1 1 *", enabled=False)
    more = tmp / "sales3.csv"
    more.write_text("id,amount\n50,1.0\n")
    client.tables.ingest_file("default", "sales", more)


def _features(client: Client, redis_prefix: str) -> list[dict[str, Any]]:
    """A Redis stream consumed into ``clicks`` (its progress recorded), and a feature view
    over it materialized into the Redis online store; returns the online values."""
    import redis

    key = f"{redis_prefix}-clicks"
    with redis.Redis.from_url(REDIS) as r:
        for i in range(CLICKS):
            row = {"user_id": i % USERS, "ts": f"2026-01-01T00:00:{i:02d}", "clicks": i}
            r.xadd(key, {"data": json.dumps(row)})
    client.streams.create("clicks", source=f"{REDIS}?stream={key}", table="clicks")
    eventually(
        lambda: client.streams.get("clicks").stats.messages >= CLICKS,
        120,
        f"{CLICKS} clicks committed",
        interval_s=0.2,
        describe=lambda: client.streams.get("clicks"),
    )
    client.features.apply(VIEW)
    client.features.materialize("click_stats")
    return online_values(client)


def online_values(client: Client) -> list[dict[str, Any]]:
    found = client.features.get_many("click_stats", ENTITIES)
    values = [f.model_dump(mode="json") for f in found]
    assert all(v["status"] == "found" for v in values), values
    return values


def _automation(client: Client, url: str, token: str, tmp: Path) -> None:
    """Alert rules (one fires, and its webhook, where nothing listens, makes a delivery),
    a codeset, and a model logged through the MLflow REST API."""
    client.monitoring.create_alert(
        "slow", deployment="churn", metric="latency_p95_ms", comparator=">", threshold=5000.0
    )
    client.monitoring.create_alert(
        "busy", deployment="churn", metric="requests", comparator=">", threshold=0.0,
        webhook="http://127.0.0.1:9/hook",
    )  # fmt: skip
    code = tmp / "code"
    code.mkdir()
    (code / "train.py").write_text("def train(ctx):\n    return {}\n")
    client.codesets.register("trainer", code)
    mlflow = httpx.post(
        f"{url}/api/2.0/mlflow/logged-models",
        json={"name": "mlflow-model"},
        headers={"authorization": f"Bearer {token}"},
        trust_env=False,
        timeout=REQUEST_GUARD_S,
    )
    assert mlflow.status_code == 200, mlflow.text


class Load:
    """Predictions and ingests (each starting a pipeline run) in a thread while a backup
    runs."""

    def __init__(self, server: RunningServer, token: str, tmp: Path) -> None:
        self.server, self.token, self.tmp = server, token, tmp
        self.stop = threading.Event()
        self.done = {"predictions": 0, "ingests": 0}
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        csv = self.tmp / "more.csv"
        csv.write_text("id,amount\n1,1.0\n2,2.0\n")
        while not self.stop.is_set():
            try:
                predict(self.server.url, self.token)
                self.done["predictions"] += 1
                if self.done["predictions"] % 5 == 1:
                    ok(self.server.cli("ingest", str(csv), "--table", "sales"))
                    self.done["ingests"] += 1
            except AssertionError as exc:
                self.errors.append(str(exc))

    def __enter__(self) -> Load:
        self.thread.start()
        time.sleep(1)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def wait_for_every_table(database: Path, timeout_s: float) -> list[str]:
    """The tables of the metadata schema still empty in ``database`` once every one has
    rows or ``timeout_s`` passed (the monitor and the alerts write on their own ticks)."""
    from sqlalchemy import create_engine, func, select

    from loopml.store.orm import Base

    engine = create_engine(f"sqlite:///{database}")

    def empty() -> list[str]:
        with engine.connect() as conn:
            return [
                name
                for name, table in sorted(Base.metadata.tables.items())
                if conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
            ]

    try:
        # The caller asserts on what is still empty, naming the tables.
        with contextlib.suppress(AssertionError):
            eventually(lambda: not empty(), timeout_s, "a row in every table", interval_s=0.5)
        return empty()
    finally:
        engine.dispose()
