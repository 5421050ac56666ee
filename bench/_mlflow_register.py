"""The client side of ``bench/mlflow_register.py``, run by an interpreter with ``mlflow``.

``python bench/_mlflow_register.py URI NAME ROUNDS``: fits the serving benchmark's forest
once (the same data, parameters and seed as ``bench/serving.py``), then ROUNDS times, each in
a run of its own: ``mlflow.sklearn.log_model`` (timed: ``log``), then
``mlflow.register_model`` of what it logged, which waits as MLflow's client does until the
version leaves PENDING_REGISTRATION (timed: ``register``). Prints one JSON line: the seconds
of each phase per round and each version's final status.
"""

from __future__ import annotations

import json
import sys
import time

import mlflow
import mlflow.sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier


def main(uri: str, name: str, rounds: int) -> None:
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("register-bench")
    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1)
    model.fit(frame, target)
    major = int(mlflow.__version__.split(".")[0])
    where = {"name": "model"} if major >= 3 else {"artifact_path": "model"}
    if major >= 3:  # mlflow 3 saves with skops and asks for the tree type to be trusted
        where["skops_trusted_types"] = ["sklearn.tree._tree.Tree"]  # type: ignore[assignment]
    out: dict[str, list[object]] = {"log": [], "register": [], "status": []}
    for _ in range(rounds):
        with mlflow.start_run():
            started = time.perf_counter()
            info = mlflow.sklearn.log_model(model, input_example=frame.head(5), **where)
            logged = time.perf_counter()
            version = mlflow.register_model(info.model_uri, name)
            done = time.perf_counter()
        out["log"].append(logged - started)
        out["register"].append(done - logged)
        # register_model answers with the version as created; its wait raised if it failed.
        settled = mlflow.MlflowClient().get_model_version(name, version.version)
        out["status"].append(str(settled.status))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
