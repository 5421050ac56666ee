"""The MLflow side of ``bench/tracking.py``, run by an interpreter that has ``mlflow``.

``populate DB RUNS METRICS MODELS`` writes the benchmark's runs into an MLflow SQLite store (the
same values as ``bench/tracking.py``'s ``populate``: same generator, same seed, same order),
into MLflow's own tables in bulk inserts, so filling 100,000 runs takes about a minute
rather than the 100,000 client round trips it would take through the API. MODELS registered
models of 3 versions each follow, made from the runs as ``bench/tracking.py``'s
``populate_registry`` makes them.

``client URI REPEAT`` times, through ``MlflowClient`` against the server at URI:
``search_runs`` (filter ``metrics.m3 > 0.5``, order ``metrics.m7 DESC``, 100 runs) and
``log_batch`` of 1,000 metric points; ``search_registered_models`` (``name LIKE 'model-04%'``,
and the first page with no filter, 100 models) and ``search_model_versions`` (by a model's
name, and by a run id). It prints one JSON object of samples in ms.

A separate script so that mlflow (whose pins differ from loopml's) lives in its own venv.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid


def populate(db: str, n_runs: int, n_metrics: int, n_models: int) -> None:
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import insert

    store = SqlAlchemyStore(f"sqlite:///{db}", "/tmp/mlflow-bench-artifacts")
    experiment_id = store.create_experiment("bench")
    rng = random.Random(7)
    now = int(time.time() * 1000)
    run_ids: list[str] = []
    for start in range(0, n_runs, 2000):
        rows: dict[type, list[dict[str, object]]] = {
            SqlRun: [],
            SqlParam: [],
            SqlTag: [],
            SqlMetric: [],
            SqlLatestMetric: [],
        }
        for i in range(start, min(start + 2000, n_runs)):
            run_id = uuid.uuid4().hex
            run_ids.append(run_id)
            rows[SqlRun].append(
                {
                    "run_uuid": run_id,
                    "name": f"run-{i}",
                    "experiment_id": int(experiment_id),
                    "user_id": "bench",
                    "status": "RUNNING",
                    "start_time": now + i,
                    "source_type": "LOCAL",
                    "source_name": "",
                    "entry_point_name": "",
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": f"/tmp/mlflow-bench-artifacts/{run_id}",
                }
            )
            # The same draws, in the same order, as bench/tracking.py's populate.
            params = {f"p{j}": str(rng.randint(0, 9)) for j in range(5)}
            metrics = [(f"m{j}", rng.random()) for j in range(n_metrics)]
            tags = {"team": rng.choice(["risk", "growth"]), "seed": str(i % 10)}
            rows[SqlParam] += [
                {"run_uuid": run_id, "key": k, "value": v} for k, v in params.items()
            ]
            rows[SqlTag] += [{"run_uuid": run_id, "key": k, "value": v} for k, v in tags.items()]
            for key, value in metrics:
                point = {"run_uuid": run_id, "key": key, "value": value, "timestamp": i, "step": i}
                rows[SqlMetric].append({**point, "is_nan": False})
                rows[SqlLatestMetric].append({**point, "is_nan": False})
        # Core bulk inserts (executemany) into MLflow's own tables, one transaction a batch.
        with store.ManagedSessionMaker() as session:
            for model, batch in rows.items():
                session.execute(insert(model.__table__), batch)
    _populate_registry(store, run_ids, n_models, now)
    print(json.dumps({"experiment_id": experiment_id}))


def _populate_registry(store: object, run_ids: list[str], n_models: int, now: int) -> None:
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlRegisteredModel,
        SqlRegisteredModelTag,
    )
    from sqlalchemy import create_engine, insert
    from sqlalchemy.orm import Session

    rng = random.Random(11)  # the same draws as bench/tracking.py's populate_registry
    rows: dict[type, list[dict[str, object]]] = {
        SqlRegisteredModel: [],
        SqlRegisteredModelTag: [],
        SqlModelVersion: [],
    }
    for i in range(n_models):
        name = f"model-{i:04d}"
        rows[SqlRegisteredModel].append(
            {"name": name, "creation_time": now + i, "last_updated_time": now + i}
        )
        team = rng.choice(["risk", "growth"])
        rows[SqlRegisteredModelTag].append({"name": name, "key": "team", "value": team})
        for j in range(3):
            run_id = run_ids[(3 * i + j) % len(run_ids)]
            rows[SqlModelVersion].append(
                {
                    "name": name,
                    "version": j + 1,
                    "creation_time": now + i,
                    "last_updated_time": now + i,
                    "current_stage": "None",
                    "source": f"runs:/{run_id}/model-{i}-{j}",
                    "run_id": run_id,
                    "status": "READY",
                    "storage_location": f"runs:/{run_id}/model-{i}-{j}",
                }
            )
    engine = create_engine(store.db_uri)  # type: ignore[attr-defined]
    with Session(engine) as session, session.begin():
        for model, batch in rows.items():
            session.execute(insert(model.__table__), batch)


def client(uri: str, repeat: int) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow_client = MlflowClient(uri)
    experiment = mlflow_client.get_experiment_by_name("bench")
    ids = [experiment.experiment_id]
    run_id = mlflow_client.create_run(experiment.experiment_id).info.run_id
    step = iter(range(10**9))

    def search() -> int:
        found = mlflow_client.search_runs(
            ids, "metrics.m3 > 0.5", order_by=["metrics.m7 DESC"], max_results=100
        )
        return len(found)

    def log_batch() -> None:
        s = next(step)
        points = [Metric(f"loss{j % 20}", j / 1000, j, s) for j in range(1000)]
        mlflow_client.log_batch(run_id, metrics=points)

    def timed(fn: object, n: int) -> list[float]:
        fn()  # type: ignore[operator]
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            fn()  # type: ignore[operator]
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def models_like() -> int:
        found = mlflow_client.search_registered_models("name LIKE 'model-04%'", max_results=100)
        return len(found)

    def models_page() -> int:
        return len(mlflow_client.search_registered_models(max_results=100))

    def versions_name() -> int:
        return len(mlflow_client.search_model_versions("name = 'model-0500'"))

    run_of = mlflow_client.search_model_versions("name = 'model-0700'")[0].run_id

    def versions_run() -> int:
        return len(mlflow_client.search_model_versions(f"run_id = '{run_of}'"))

    assert search() == 100
    assert (models_like(), models_page(), versions_name(), versions_run()) == (100, 100, 3, 1)
    work = {
        "search": search,
        "log_batch": log_batch,
        "models_like": models_like,
        "models_page": models_page,
        "versions_name": versions_name,
        "versions_run": versions_run,
    }
    print(json.dumps({key: timed(fn, repeat) for key, fn in work.items()}))


if __name__ == "__main__":
    if sys.argv[1] == "populate":
        populate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        client(sys.argv[2], int(sys.argv[3]))
